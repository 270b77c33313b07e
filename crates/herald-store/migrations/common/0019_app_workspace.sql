-- The MPS workspace an app answers for: the MPS-compatible endpoint checks the requests'
-- WorkspaceId against it (NULL: any).
ALTER TABLE apps ADD COLUMN workspace_id TEXT;
