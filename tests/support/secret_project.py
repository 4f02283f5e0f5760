"""The project of the adversarial secrets and registry tests: quantumblog's prod datasource password
is the secret DB_PASSWORD, whose value in those tests is CANARY."""

CANARY = "canary-Pa55w0rd-7f3c"
PROJECT = """\
kind: Project
name: quantumblog
environments:
  prod: {host: localhost}
services:
  db: {type: database}
datasources:
  main:
    driver: postgresql
    service: db
    database: blog
    username: blog
    password: "secret:DB_PASSWORD"
"""
