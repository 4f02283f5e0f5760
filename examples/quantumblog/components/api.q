<q:component name="PostsApi" type="microservice">
  <q:function name="listPosts" endpoint="/api/posts" method="GET">
    <q:query name="allPosts" datasource="blog-db">SELECT id, title FROM posts</q:query>
    <q:return value="{allPosts}" />
  </q:function>
  <q:function name="createPost" endpoint="/api/posts" method="post">
    <q:query name="insertPost" datasource="blog-db">INSERT INTO posts (title) VALUES (:title)</q:query>
  </q:function>
</q:component>
