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

// db_marked_down tells whether db-health has the server ("primary" or "replica") out.
function db_marked_down(string $role): bool
{
    $dir = getenv('DB_STATE_DIR') ?: '/var/lib/hastack-db';
    return is_file("$dir/$role.down");
}

// db_available tells whether a database server ("primary" or "replica") at $host is worth a
// connection, without ever waiting more than 150 ms: not if db-health has it out (a marker
// file, checked every 500 ms), and not if it does not send its greeting within 150 ms now
// (a server that stopped or hung in the last half second, before db-health saw it). mysqli's
// own timeouts are whole seconds.
function db_available(string $role, string $host): bool
{
    if (db_marked_down($role)) {
        return false;
    }
    $sock = @fsockopen($host, 3306, $errno, $errstr, 0.15);
    if ($sock === false) {
        return false;
    }
    stream_set_timeout($sock, 0, 150000);
    $greeting = fread($sock, 5);
    fclose($sock);
    return is_string($greeting) && strlen($greeting) === 5 && ord($greeting[4]) === 10;
}

function db_connect(string $host): mysqli
{
    $db = mysqli_init();
    $db->options(MYSQLI_OPT_CONNECT_TIMEOUT, 1);
    $db->options(MYSQLI_OPT_READ_TIMEOUT, 5);
    $db->real_connect($host, 'app', app_password(), 'app', 3306);
    $db->set_charset('utf8mb4');
    return $db;
}

function server_name(): string
{
    return getenv('WEB_SERVER_NAME') ?: gethostname();
}
