"""Prometheus metrics of the triggers (served by the process's /metrics like the processors' own)."""

from prometheus_client import Counter, Gauge

DECIDED = Counter("pixeltrack_trigger_actions_decided_total", "Actions a rule decided (once per key).", ["rule"])
DELIVERIES = Counter("pixeltrack_trigger_deliveries_total",
                     "Actions that ended: delivered (2xx) or dead_lettered (given up).", ["rule", "outcome"])
ATTEMPTS = Counter("pixeltrack_trigger_delivery_attempts_total", "Webhook attempts, by result (ok or a reason).",
                   ["rule", "result"])
SETTLING = Gauge("pixeltrack_trigger_events_settling", "Events held until their settle time is over.")
DUE = Gauge("pixeltrack_trigger_actions_due", "Actions decided and not yet delivered or dead-lettered.")
