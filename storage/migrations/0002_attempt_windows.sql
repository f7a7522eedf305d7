-- CreativeFlow Core on PostgreSQL, schema version 2: attempt windows shared by every node.
--
-- Rate limits (failed logins per account and per client address, signups and reset requests
-- per address) count attempts in fixed windows. With one node they live in its memory; with
-- several nodes on one database each node's copy would let a guesser try N times the limit,
-- so the counts live here and every node takes from the same row under its row lock. Not part
-- of the storage interface's tables: nothing is exported, copied or verified from it, and a row
-- is removed once its window has ended.

CREATE TABLE cf_attempt_windows (
    k text PRIMARY KEY,
    -- When the window that `n` counts ends (the database's clock, so nodes need not agree).
    ends timestamptz NOT NULL,
    n integer NOT NULL CHECK (n >= 0)
);

CREATE INDEX cf_attempt_windows_ends ON cf_attempt_windows (ends);
