"""`qrm serve`: the HTTP API, the second thin face over reconciler.flows (reconciler/cli is the first).

The two faces are independent siblings (import-linter): neither imports the other. `qrm serve` (cli)
starts uvicorn on `app_from_environment`, which builds the app with `create_app` for the workspace the
command named. app.py holds the app, its error handlers and docs pages; guard.py the ASGI middleware
every request passes (body cap, access log, last line of defence); auth.py the token check; routes.py
the read endpoints; suites.py the component and test-suite endpoints (scan, generate, run, test-runs);
writes.py the writes through git (allocate, release, secrets, health-check, apply).
"""
