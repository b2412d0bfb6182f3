"""The sensors: submitted plans become runs; run ends become signed webhooks."""
