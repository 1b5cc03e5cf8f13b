-- A retried authorize activity (after a worker crash) must not log the same decision twice.
ALTER TABLE authorization_log ADD COLUMN activity_key text;
CREATE UNIQUE INDEX authorization_log_activity_key ON authorization_log (activity_key);
