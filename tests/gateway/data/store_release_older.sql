-- jobs.sqlite as an older release made it (before uploads.problem/owner, jobs.attempts and
-- the people tables): the data folder that broke with "table uploads has 5 columns but 6
-- values were supplied". @DATA@ is replaced by the data folder's absolute path.
CREATE TABLE uploads (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
    created REAL NOT NULL);
CREATE TABLE audit (
    at REAL NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL, job TEXT, upload TEXT,
    study TEXT);
CREATE TABLE jobs (
    id TEXT PRIMARY KEY, upload_id TEXT NOT NULL, status TEXT NOT NULL, progress REAL NOT NULL,
    request TEXT NOT NULL, result TEXT, error TEXT, created REAL NOT NULL, started REAL,
    finished REAL);
INSERT INTO uploads VALUES ('aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', 'clip.mp4',
    '@DATA@/uploads/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/clip.mp4', 1234, 1600000000.0);
INSERT INTO jobs VALUES ('11111111111111111111111111111111', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
    'done', 1, '{"upload_id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}', NULL, NULL, 1600000002.0,
    1600000003.0, 1600000004.0);
INSERT INTO jobs VALUES ('33333333333333333333333333333333', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa',
    'queued', 0, '{"upload_id":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}', NULL, NULL, 1600000005.0,
    NULL, NULL);
INSERT INTO audit VALUES (1600000006.0, 'admin', 'upload', NULL,
    'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa', NULL);
