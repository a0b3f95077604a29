"""Grafana dashboards of SalesPulse, generated from code into deploy/grafana/dashboards/.

``make dashboards`` (``python -m salespulse.dev.dashboards``) writes one JSON file per
dashboard; the committed files must equal the generator's output (a test checks). The
JSON is Grafana's dashboard model at schemaVersion 39 (Grafana 10.4 and 11.x; newer
Grafana migrates it on load). Every query uses the Prometheus data source provisioned
with uid ``prometheus`` (deploy/grafana/provisioning/datasources/prometheus.yml).
"""
