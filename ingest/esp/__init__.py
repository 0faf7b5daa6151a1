"""Webhook receivers of email platforms (SendGrid, Mailgun, Postmark, Amazon SES through SNS): docs/esp.md."""
