<q:component name="Header" type="partial">
  <q:import component="Card" />
  <q:include file="shared/nav.q" />
  <header><h1>Quantum Blog</h1></header>
</q:component>
