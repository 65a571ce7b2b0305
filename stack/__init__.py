"""Team mode: the platform's state on shared services, started locally by `make stack`.

PostgreSQL holds MLflow's runs, registry and users; an MLflow tracking server with basic
authentication serves them and proxies the artifacts; Prometheus scrapes the services. Every
process runs on 127.0.0.1 with its state under `.stack/` (see docs/team.md).
"""
