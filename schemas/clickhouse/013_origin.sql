-- Where a hit came from: "" for a fetch of pixeltrack's own pixel or link at the edge, else the email
-- platform whose webhook reported it (sendgrid, mailgun, postmark, ses: ingest/esp, docs/esp.md).
-- The platform's own machine flag, when it sent one, is the reason platform_machine_flag.
ALTER TABLE events ADD COLUMN IF NOT EXISTS origin LowCardinality(String) DEFAULT '';

-- The `hits` view again (as 001 defines it), so that it shows the new column from this start on.
CREATE OR REPLACE VIEW hits AS
SELECT * EXCEPT (sign, src_topic, src_partition, src_offset)
FROM events FINAL
WHERE sign = 1;
