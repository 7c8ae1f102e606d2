<?php
// Connections for the read/write split: writes go to the primary, reads to the replica.
// Not served directly (apache.conf denies it); included by the pages.

mysqli_report(MYSQLI_REPORT_ERROR | MYSQLI_REPORT_STRICT);

function app_password(): string
{
    $file = getenv('DB_APP_PASSWORD_FILE') ?: '/run/secrets/db_app_password';
    $pw = @file_get_contents($file);
    if ($pw === false) {
        throw new RuntimeException("cannot read the database password from $file");
    }
    return trim($pw);
}

function db_connect(string $host): mysqli
{
    $db = mysqli_init();
    $db->options(MYSQLI_OPT_CONNECT_TIMEOUT, 2);
    $db->options(MYSQLI_OPT_READ_TIMEOUT, 5);
    $db->real_connect($host, 'app', app_password(), 'app', 3306);
    $db->set_charset('utf8mb4');
    return $db;
}

function server_name(): string
{
    return getenv('WEB_SERVER_NAME') ?: gethostname();
}
