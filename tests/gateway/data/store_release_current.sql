-- jobs.sqlite as the last release before migrations made it (store.SCHEMA of commit 9eeafa0,
-- exports included, every ADDED_COLUMNS column already in place, no alembic_version), with rows.
-- @DATA@ is replaced by the data folder's absolute path (uploads were stored absolute).
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
    created REAL NOT NULL, problem TEXT, owner TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS audit (
    at REAL NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL, job TEXT, upload TEXT,
    study TEXT, role TEXT NOT NULL DEFAULT '', client TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, upload_id TEXT NOT NULL, status TEXT NOT NULL, progress REAL NOT NULL,
    request TEXT NOT NULL, result TEXT, error TEXT, created REAL NOT NULL, started REAL,
    finished REAL, attempts INTEGER NOT NULL DEFAULT 0, failure_kind TEXT,
    owner TEXT NOT NULL DEFAULT '', ward TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, ward TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS sessions (
    digest TEXT PRIMARY KEY, user TEXT NOT NULL, created REAL NOT NULL, seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, sha256 TEXT UNIQUE NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
    scopes TEXT NOT NULL, expires REAL, revoked INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    job TEXT NOT NULL, destination TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL,
    first_try REAL NOT NULL, next_try REAL NOT NULL, error TEXT, receipts TEXT,
    PRIMARY KEY (job, destination));
CREATE TABLE IF NOT EXISTS sign_ons (
    state TEXT PRIMARY KEY, nonce TEXT NOT NULL, verifier TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS login_failures (at REAL NOT NULL, user TEXT NOT NULL,
    client TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS exports (
    id TEXT PRIMARY KEY, job TEXT NOT NULL, profile TEXT NOT NULL, destination TEXT NOT NULL,
    who TEXT NOT NULL, state TEXT NOT NULL, created REAL NOT NULL, finished REAL, error TEXT,
    result TEXT);
INSERT INTO uploads VALUES ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'clip.mp4',
    '@DATA@/uploads/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/clip.mp4', 1234, 1700000000.0, NULL, 'nurse');
INSERT INTO uploads VALUES ('bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb', 'elsewhere.mp4',
    '/mnt/elsewhere/elsewhere.mp4', 99, 1700000001.0, NULL, 'nurse');
INSERT INTO jobs (id, upload_id, status, progress, request, created, started, finished, attempts,
    owner, ward) VALUES ('11111111111111111111111111111111', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
    'done', 1, '{"upload_id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}', 1700000002.0, 1700000003.0,
    1700000004.0, 1, 'nurse', 'endoscopy');
INSERT INTO jobs (id, upload_id, status, progress, request, created, attempts, owner)
    VALUES ('22222222222222222222222222222222', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'running', 0.5,
    '{"upload_id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}', 1700000005.0, 1, 'nurse');
INSERT INTO audit VALUES (1700000006.0, 'nurse', 'upload', NULL,
    'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', NULL, 'uploader', '127.0.0.1');
INSERT INTO users VALUES ('it', 'admin', '$argon2id$placeholder', 0, 1700000000.0, '');
INSERT INTO outbox VALUES ('11111111111111111111111111111111', 'pacs', 'sent', 1, 1700000003.5,
    1700000003.5, NULL, '[]');
INSERT INTO exports VALUES ('eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee', '11111111111111111111111111111111',
    'basic', 'research', 'doc', 'sent', 1700000007.0, 1700000008.0, NULL, NULL);
