"""Behaviour triggers: rules over classified events that call signed webhooks (e.g. a CRM).

rules.py (TOML → typed rules) · engine.py (the pure core) · records.py (actions, triggers.state and
triggers.dlq records) · webhook.py (signed delivery, retries) · dispatch.py (concurrent deliveries) ·
core.py (the one step of both runners) · runner.py (its Kafka adapter) · service.py (its embedded
adapter) · signature.py (verify_signature for receivers; standard library only) · metrics.py.
Recipient events (consent changes, unsubscribes, complaints → one webhook each, on the same delivery
code): recipient_events.py (records → actions) · recipient_runner.py (Kafka) · recipient_service.py
(serve).
See docs/triggers.md.
"""
