"""Load runs: Locust driven as a subprocess (runner), its report, Redis's own view
(server_stats), and the anchors next to it (bench, paced_client)."""
