-- Each stored token is bound to the API that issued it (scheme://host:port of the base URL it is used with):
-- the store never hands a token out for another API (a sandbox token must not reach graph.facebook.com).
-- Rows stored before this migration have NULL (unknown API): they are replaced by the first token obtained
-- for the API in use (Meta adopts its row when the environment still holds the very token that seeded it).
ALTER TABLE ops.platform_tokens ADD COLUMN IF NOT EXISTS api text;
