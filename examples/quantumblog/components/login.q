<q:component name="LoginPage" type="page">
  <q:set name="errorMsg" value="" />
  <q:action name="login" method="POST">
    <q:param name="email" type="email" required="true" />
    <q:param name="password" type="string" minlength="8" maxlength="255" />
    <q:validate field="username" required="true" minLength="2" maxLength="100" pattern="^[a-z0-9_]+$" />
    <q:validate field="age" type="integer" min_length="1" min="18" max="120" />
    <q:validate field="plan" enum="free, pro,team" />
    <q:query name="authUser" datasource="blog-db">
      SELECT id, password_hash FROM users WHERE email = :email
      <q:param name="email" value="{form.email}" type="string" />
    </q:query>
    <q:redirect url="/admin" flash="Welcome back!" />
  </q:action>
  <form id="login-form" method="post" action="{application.basePath}/login">
    <input type="hidden" name="action" value="login" />
    <input type="email" name="email" required="required" />
    <input type="password" name="password" minlength="8" maxlength="255" required="true" />
    <button type="submit">Log in</button>
  </form>
</q:component>
