// Decrypt a whole SOPS YAML file with the npm package sops-age, an implementation independent of qrm.
// Usage: SOPS_AGE_KEY=AGE-SECRET-KEY-1... node decrypt.mjs FILE
// Prints the plaintext document as JSON on stdout; on failure, the error on stderr and exit 1.
// (sops-age does not check the SOPS MAC; qrm's own tests do.)
import { decryptSops } from "sops-age";

const [path] = process.argv.slice(2);
const secretKey = process.env.SOPS_AGE_KEY;
if (!path || !secretKey) {
  console.error("usage: SOPS_AGE_KEY=AGE-SECRET-KEY-1... node decrypt.mjs FILE");
  process.exit(2);
}
try {
  const plain = await decryptSops({ path, secretKey, fileType: "yaml" });
  process.stdout.write(JSON.stringify(plain) + "\n");
} catch (error) {
  console.error(`sops-age: ${error && error.message ? error.message : error}`);
  process.exit(1);
}
