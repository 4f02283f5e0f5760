<q:component name="AdminDashboard" type="page" require_auth="true" require_role="admin">
  <q:include component="shared/header" />
  <q:action name="deletePost" method="post">
    <q:param name="id" type="integer" required="true" min="1" />
    <q:query name="removePost" datasource="blog-db" type="delete">
      DELETE FROM posts WHERE id = :id
      <q:param name="id" value="{form.id}" type="integer" />
    </q:query>
    <q:redirect url="/admin" flash="Post deleted" />
  </q:action>
  <q:if condition="{user.isAdmin}">
    <p>Admin</p>
  </q:if>
  <q:elseif condition="{user.isEditor}">
    <p>Editor</p>
  </q:elseif>
  <q:else>
    <p>Guest</p>
  </q:else>
</q:component>
