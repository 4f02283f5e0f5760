<q:component name="PostList">
  <q:query type="select" cache="300" datasource="blog-db" name="recentPosts">
    SELECT id, title FROM posts WHERE published_at < NOW() ORDER BY published_at DESC
  </q:query>
  <q:loop query="recentPosts">
    <h2>{recentPosts.title}</h2>
  </q:loop>
</q:component>
