-- pgbench script for scripts/demo.sh: one transaction of a web app's request against the
-- schema in scripts/demo_schema.sql. Every run looks up a user and a project by id and reads
-- the project's recent activity; one run in five also records a log entry.
--   pgbench -n -f scripts/demo_workload.sql -c 20 -T 10 demo
\set user_id random(1, 2000)
\set project_id random(1, 300)
\set write random(1, 5)
SELECT id, email, full_name, is_active, last_login_at FROM users WHERE id = :user_id;
SELECT id, owner_id, name, status, updated_at FROM projects WHERE id = :project_id;
SELECT created_at, user_id, category, action, level
    FROM activity_logs
    WHERE project_id = :project_id
    ORDER BY created_at DESC
    LIMIT 20;
\if :write = 1
INSERT INTO activity_logs (user_id, project_id, category, action, level, entity_type, entity_id, metadata)
    VALUES (:user_id, :project_id, 'project', 'view', 'info', 'project', :project_id, '{"client": "demo"}');
\endif
