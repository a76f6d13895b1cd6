-- Sample schema and data for scripts/demo.sh: a small SaaS app of the kind the seed reports in
-- /work/shared/seeds describe (FastNext, Chrono Scraper): users, the projects they own, and a
-- high-volume, time-series activity_logs table. Deterministic (setseed), so every demo run sees
-- the same data. Load with: psql -v ON_ERROR_STOP=1 -d demo -f scripts/demo_schema.sql
--
-- The indexes are the ones those teams added by hand. One index the workload would want is
-- deliberately missing: activity_logs has none on (project_id, created_at), so "recent activity
-- for a project" scans the table; it is the kind of thing `pgturbo advise` should find.

SELECT setseed(0.42);

CREATE TABLE users (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email           text NOT NULL UNIQUE,
    full_name       text NOT NULL,
    is_active       boolean NOT NULL DEFAULT true,
    is_verified     boolean NOT NULL DEFAULT false,
    is_locked       boolean NOT NULL DEFAULT false,
    mfa_enabled     boolean NOT NULL DEFAULT false,
    approval_status text NOT NULL DEFAULT 'approved'
                    CHECK (approval_status IN ('pending', 'approved', 'rejected')),
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_login_at   timestamptz
);

CREATE TABLE projects (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner_id    bigint NOT NULL REFERENCES users (id),
    name        text NOT NULL,
    description text,
    status      text NOT NULL DEFAULT 'active'
                CHECK (status IN ('active', 'paused', 'archived')),
    settings    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE activity_logs (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    user_id     bigint REFERENCES users (id),
    project_id  bigint REFERENCES projects (id),
    category    text NOT NULL,
    action      text NOT NULL,
    level       text NOT NULL DEFAULT 'info' CHECK (level IN ('debug', 'info', 'warning', 'error')),
    entity_type text,
    entity_id   bigint,
    ip_address  inet,
    metadata    jsonb NOT NULL DEFAULT '{}',
    tags        jsonb NOT NULL DEFAULT '[]'
);

-- 2,000 users who signed up over the last two years; most active and verified.
INSERT INTO users (email, full_name, is_active, is_verified, is_locked, mfa_enabled,
                   approval_status, created_at, last_login_at)
SELECT 'user' || g || '@example.com',
       (ARRAY['Ada', 'Grace', 'Linus', 'Barbara', 'Ken', 'Margaret', 'Dennis', 'Radia',
              'Edsger', 'Frances'])[1 + g % 10] || ' ' ||
       (ARRAY['Lovelace', 'Hopper', 'Torvalds', 'Liskov', 'Thompson', 'Hamilton',
              'Ritchie', 'Perlman', 'Dijkstra', 'Allen'])[1 + (g * 7 + g / 10) % 10],
       random() < 0.92,
       random() < 0.80,
       random() < 0.01,
       random() < 0.30,
       CASE WHEN random() < 0.03 THEN 'pending' ELSE 'approved' END,
       now() - interval '730 days' * random(),
       CASE WHEN random() < 0.9 THEN now() - interval '60 days' * random()^2 END
FROM generate_series(1, 2000) AS g;

-- 300 projects, owned by the first 1,500 users.
INSERT INTO projects (owner_id, name, description, status, settings, created_at, updated_at)
SELECT 1 + (g * 7) % 1500,
       (ARRAY['Atlas', 'Beacon', 'Comet', 'Drift', 'Ember', 'Fjord', 'Gale', 'Harbor'])[1 + g % 8]
           || ' ' || g,
       'Sample project ' || g,
       (ARRAY['active', 'active', 'active', 'paused', 'archived'])[1 + g % 5],
       jsonb_build_object('retention_days', 30 + g % 5 * 30, 'public', g % 3 = 0),
       now() - interval '365 days' * random(),
       now() - interval '30 days' * random()
FROM generate_series(1, 300) AS g;

-- 30,000 log entries over the last 90 days, denser towards now.
INSERT INTO activity_logs (created_at, user_id, project_id, category, action, level,
                           entity_type, entity_id, ip_address, metadata, tags)
SELECT now() - interval '90 days' * random()^2,
       1 + (random() * 1999)::int,
       1 + (random() * 299)::int,
       c.category,
       c.action,
       CASE WHEN r < 0.02 THEN 'error' WHEN r < 0.08 THEN 'warning'
            WHEN r < 0.15 THEN 'debug' ELSE 'info' END,
       c.entity_type,
       1 + (random() * 4999)::int,
       ('10.' || (g % 256) || '.' || (g / 256 % 256) || '.' || (1 + g % 250))::inet,
       jsonb_build_object('duration_ms', (random() * 400)::int,
                          'client', (ARRAY['web', 'ios', 'android', 'api'])[1 + g % 4]),
       CASE WHEN g % 10 = 0 THEN '["important"]'::jsonb ELSE '[]'::jsonb END
FROM (SELECT g, random() AS r, 1 + g % 6 AS k FROM generate_series(1, 30000) AS g) AS s
JOIN (VALUES (1, 'auth', 'login', 'user'),
             (2, 'auth', 'logout', 'user'),
             (3, 'project', 'view', 'project'),
             (4, 'project', 'update', 'project'),
             (5, 'task', 'create', 'task'),
             (6, 'task', 'complete', 'task')) AS c (k, category, action, entity_type)
    ON c.k = s.k;

-- The indexes from the seed reports.
CREATE INDEX idx_users_active_verified ON users (is_active, is_verified);
CREATE INDEX idx_users_last_login ON users (last_login_at DESC);
CREATE INDEX idx_projects_owner_created ON projects (owner_id, created_at DESC);
CREATE INDEX idx_activity_logs_created_at_desc ON activity_logs (created_at DESC);
CREATE INDEX idx_activity_logs_user_created ON activity_logs (user_id, created_at DESC);
CREATE INDEX idx_activity_logs_category_action ON activity_logs (category, action);
CREATE INDEX idx_activity_logs_level_created ON activity_logs (level, created_at DESC);
CREATE INDEX idx_activity_logs_entity ON activity_logs (entity_type, entity_id);
CREATE INDEX idx_activity_logs_metadata_gin ON activity_logs USING gin (metadata);

VACUUM ANALYZE users;
VACUUM ANALYZE projects;
VACUUM ANALYZE activity_logs;
