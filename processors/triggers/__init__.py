"""Behaviour triggers: rules over classified events that call signed webhooks (e.g. a CRM).

rules.py (TOML → typed rules) · engine.py (the pure core) · webhook.py (signed delivery, retries) ·
dispatch.py (concurrent deliveries) · runner.py (Kafka consumer group, triggers.state, triggers.dlq) ·
service.py (the embedded wiring) · signature.py (verify_signature for receivers; standard library only).
See docs/triggers.md.
"""
