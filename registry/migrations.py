"""Schema migrations, applied in order; `PRAGMA user_version` records how far a database is.

Append a new script to MIGRATIONS to change the schema; never edit one that has shipped.
Each has a PostgreSQL twin, by number, in `registry/store/postgres_migrations.py`
(tests/test_stores.py checks that there is one for each, tests/test_schema_parity.py
that the two make the same schema after each step; docs/decisions.md says why there
are two).
"""

from __future__ import annotations

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE organizations (
        org_id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        access_key TEXT NOT NULL UNIQUE,
        secret_hash TEXT NOT NULL,
        admin INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE thing_models (
        org_id TEXT NOT NULL REFERENCES organizations(org_id),
        model_id TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        tsl TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (org_id, model_id)
    );
    CREATE TABLE products (
        product_key TEXT PRIMARY KEY,
        org_id TEXT NOT NULL REFERENCES organizations(org_id),
        name TEXT NOT NULL,
        model_id TEXT NOT NULL,
        product_secret TEXT NOT NULL,
        settings TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (org_id, name)
    );
    CREATE INDEX products_by_model ON products(org_id, model_id);
    CREATE TABLE devices (
        product_key TEXT NOT NULL REFERENCES products(product_key),
        device_key TEXT NOT NULL,
        org_id TEXT NOT NULL,
        device_secret TEXT NOT NULL,
        asset_id TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        timezone TEXT NOT NULL,
        description TEXT NOT NULL,
        attributes TEXT NOT NULL,
        tags TEXT NOT NULL,
        enabled INTEGER NOT NULL DEFAULT 1,
        online INTEGER NOT NULL DEFAULT 0,
        activated_at INTEGER,
        last_seen_at INTEGER,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (product_key, device_key)
    );
    CREATE TABLE bindings (
        product_key TEXT NOT NULL,
        device_key TEXT NOT NULL,
        user_id TEXT NOT NULL,
        role TEXT NOT NULL,
        shared_by TEXT,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (product_key, device_key, user_id),
        FOREIGN KEY (product_key, device_key)
            REFERENCES devices(product_key, device_key) ON DELETE CASCADE
    );
    CREATE TABLE topology (
        product_key TEXT NOT NULL,
        device_key TEXT NOT NULL,
        gateway_product_key TEXT NOT NULL,
        gateway_device_key TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (product_key, device_key),
        FOREIGN KEY (product_key, device_key)
            REFERENCES devices(product_key, device_key) ON DELETE CASCADE,
        FOREIGN KEY (gateway_product_key, gateway_device_key)
            REFERENCES devices(product_key, device_key) ON DELETE CASCADE
    );
    CREATE INDEX topology_by_gateway ON topology(gateway_product_key, gateway_device_key);
    """,
    # 2: what the broker writes behind: device traffic and events, and latest values
    """
    CREATE TABLE device_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        product_key TEXT NOT NULL,
        device_key TEXT NOT NULL,
        ts INTEGER NOT NULL,
        kind TEXT NOT NULL,
        topic TEXT NOT NULL DEFAULT '',
        payload BLOB,
        code INTEGER,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX device_log_by_device ON device_log(product_key, device_key, seq);
    CREATE TABLE device_latest (
        product_key TEXT NOT NULL,
        device_key TEXT NOT NULL,
        identifier TEXT NOT NULL,
        value TEXT NOT NULL,
        ts INTEGER NOT NULL,
        PRIMARY KEY (product_key, device_key, identifier)
    );
    """,
    # 3: commands to devices (downlink), kept until they end, so a restart loses none
    """
    CREATE TABLE commands (
        command_id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL,
        product_key TEXT NOT NULL,
        device_key TEXT NOT NULL,
        kind TEXT NOT NULL,
        service_id TEXT NOT NULL DEFAULT '',
        input BLOB NOT NULL,
        request_id TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        timeout_ms INTEGER NOT NULL,
        expires_at INTEGER,
        sent_at INTEGER,
        reply_by INTEGER,
        finished_at INTEGER,
        reply_code INTEGER,
        output BLOB,
        message TEXT NOT NULL DEFAULT '',
        mismatch TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX commands_by_device ON commands(product_key, device_key, created_at);
    CREATE INDEX commands_open ON commands(state) WHERE state IN ('pending', 'sent');
    """,
    # 4: device certificates issued by gatehouse's CA
    """
    CREATE TABLE certificates (
        serial TEXT PRIMARY KEY,
        org_id TEXT NOT NULL,
        product_key TEXT NOT NULL,
        device_key TEXT NOT NULL,
        cert_pem TEXT NOT NULL,
        not_before INTEGER NOT NULL,
        not_after INTEGER NOT NULL,
        revoked_at INTEGER,
        created_at INTEGER NOT NULL
    );
    CREATE INDEX certificates_by_device ON certificates(product_key, device_key);
    """,
    # 5: Custom data format: a product's data-parsing script (Alibaba's contract)
    """
    CREATE TABLE product_scripts (
        product_key TEXT PRIMARY KEY REFERENCES products(product_key) ON DELETE CASCADE,
        org_id TEXT NOT NULL,
        script_type TEXT NOT NULL,
        content TEXT NOT NULL,
        version TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    """,
    # 6: applications: data subscriptions with their retained messages and consumer
    # groups' committed offsets, and webhooks
    """
    CREATE TABLE subscriptions (
        sub_id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL,
        name TEXT NOT NULL,
        product_keys TEXT NOT NULL,
        kinds TEXT NOT NULL,
        access_key TEXT NOT NULL UNIQUE,
        access_secret TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE subscription_messages (
        sub_id TEXT NOT NULL,
        part INTEGER NOT NULL,
        pos INTEGER NOT NULL,
        ts INTEGER NOT NULL,
        msg_key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (sub_id, part, pos)
    );
    CREATE TABLE subscription_offsets (
        sub_id TEXT NOT NULL,
        group_name TEXT NOT NULL,
        part INTEGER NOT NULL,
        pos INTEGER NOT NULL,
        PRIMARY KEY (sub_id, group_name, part)
    );
    CREATE TABLE webhooks (
        webhook_id TEXT PRIMARY KEY,
        org_id TEXT NOT NULL,
        url TEXT NOT NULL,
        product_keys TEXT NOT NULL,
        kinds TEXT NOT NULL,
        secret TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    """,
    # 7: the product model of Quectel's Developer Center and EnOS (issue 16): projects,
    # development status, product images; product settings carried to the new rules
    # (README, "Products")
    """
    CREATE TABLE projects (
        org_id TEXT NOT NULL REFERENCES organizations(org_id),
        project_id TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        PRIMARY KEY (org_id, project_id),
        UNIQUE (org_id, name)
    );
    INSERT INTO projects (org_id, project_id, name, description, created_at)
        SELECT org_id, 'default', 'Default project', '', created_at FROM organizations;
    ALTER TABLE products ADD COLUMN project_id TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE products ADD COLUMN dev_status TEXT NOT NULL DEFAULT 'development';
    ALTER TABLE products ADD COLUMN released_at INTEGER;
    CREATE INDEX products_by_project ON products(org_id, project_id);
    CREATE TABLE product_images (
        product_key TEXT PRIMARY KEY REFERENCES products(product_key) ON DELETE CASCADE,
        content_type TEXT NOT NULL,
        content BLOB NOT NULL,
        updated_at INTEGER NOT NULL
    );
    -- The access mode and the specified gateway are the sub-device product's now.
    UPDATE products SET settings = json_set(settings, '$.gatewayAccessMode',
        CASE WHEN EXISTS (
            SELECT 1 FROM topology t JOIN products g ON g.product_key = t.gateway_product_key
            WHERE t.product_key = products.product_key
            AND json_extract(g.settings, '$.gatewayAccessMode') = 'integration'
        ) OR EXISTS (
            SELECT 1 FROM json_each(products.settings, '$.specifiedGateway.gatewayProductKeys') k
            JOIN products g ON g.product_key = k.value
            WHERE json_extract(g.settings, '$.gatewayAccessMode') = 'integration'
        ) THEN 'integration' ELSE 'proxy' END)
        WHERE json_extract(settings, '$.deviceType') = 'subdevice';
    UPDATE products SET settings = json_set(settings, '$.specifiedGateway.enabled', json('false'))
        WHERE json_extract(settings, '$.deviceType') <> 'subdevice';
    UPDATE products SET settings = json_set(settings, '$.gatewayAccessMode', json('null'))
        WHERE json_extract(settings, '$.deviceType') <> 'subdevice';
    -- Sub-devices have no network; the platform is NB-IoT's, encryption and power
    -- saving China Telecom AEP's.
    UPDATE products SET settings = json_set(settings, '$.networkMethod', json('null'),
        '$.encryption', json('null'), '$.powerSaving', json('null'))
        WHERE json_extract(settings, '$.deviceType') = 'subdevice';
    UPDATE products SET settings = json_set(settings, '$.connectedPlatform', json('null'))
        WHERE COALESCE(json_extract(settings, '$.networkMethod'), '') <> 'NB-IoT';
    UPDATE products SET settings = json_set(settings, '$.connectedPlatform',
        CASE WHEN json_extract(settings, '$.encryption') IS NOT NULL
            OR json_extract(settings, '$.powerSaving') IS NOT NULL
            OR lower(COALESCE(json_extract(settings, '$.connectedPlatform'), '')) LIKE '%aep%'
            OR lower(COALESCE(json_extract(settings, '$.connectedPlatform'), '')) LIKE '%telecom%'
        THEN 'ChinaTelecomAEP' ELSE 'DeveloperCenter' END)
        WHERE json_extract(settings, '$.networkMethod') = 'NB-IoT';
    UPDATE products SET settings = json_set(settings,
        '$.encryption', COALESCE(json_extract(settings, '$.encryption'), 'DTLS'),
        '$.powerSaving', COALESCE(json_extract(settings, '$.powerSaving'), json('{"mode": "PSM"}')))
        WHERE json_extract(settings, '$.connectedPlatform') = 'ChinaTelecomAEP';
    -- A free-text category becomes a tag; the product is Self-defined Development.
    UPDATE products SET settings = json_set(
        json_insert(settings, '$.productTags.category', json_extract(settings, '$.category')),
        '$.category', 'self-defined')
        WHERE json_extract(settings, '$.category') IS NOT NULL
        AND json_extract(settings, '$.category') NOT IN ('self-defined', 'th-sensor',
            'smart-plug', 'gateway',
            'energy-meter', 'quecone-light');
    UPDATE products SET settings = json_set(settings, '$.category', 'self-defined')
        WHERE json_extract(settings, '$.category') IS NULL;
    """,
    # 8: activation codes bought per product, and access keys with a permission (issue
    # 16; README, "Activation codes" and "Access keys")
    """
    CREATE TABLE activation_codes (
        code TEXT PRIMARY KEY,
        product_key TEXT NOT NULL REFERENCES products(product_key) ON DELETE CASCADE,
        batch_id TEXT NOT NULL,
        valid_seconds INTEGER NOT NULL,
        purchased_at INTEGER NOT NULL,
        device_key TEXT,
        consumed_at INTEGER,
        expires_at INTEGER
    );
    CREATE INDEX activation_codes_by_product ON activation_codes(product_key, purchased_at);
    CREATE TABLE access_keys (
        access_key TEXT PRIMARY KEY,
        org_id TEXT NOT NULL REFERENCES organizations(org_id),
        secret_hash TEXT NOT NULL,
        permission TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL
    );
    CREATE INDEX access_keys_by_org ON access_keys(org_id);
    """,
)
