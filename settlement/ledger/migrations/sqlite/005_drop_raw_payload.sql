-- After 004 filled `signed` and `sig` for every envelope, the payload column goes: the canonical
-- payload is the signed bytes with the signature put back (protocol/signature.ts, payloadOf).
ALTER TABLE envelopes DROP COLUMN raw;
