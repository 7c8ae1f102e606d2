<?php
// Connections for the read/write split: writes go to the primary, reads to the replica; which
// server is which follows the agent's roles file (a failover or switchover changes it).
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

function db_state_dir(): string
{
    return getenv('DB_STATE_DIR') ?: '/var/lib/hastack-db';
}

// db_roles returns [primary, replica] addresses. The agent's roles file ("primary" in db-health's
// state directory) names the primary after a failover or switchover; without it (or while the
// agent rewrites it: empty) the primary is DB_PRIMARY_HOST.
function db_roles(): array
{
    $a = getenv('DB_PRIMARY_HOST') ?: 'db_master';
    $b = getenv('DB_REPLICA_HOST') ?: 'db_slave';
    $named = trim((string) @file_get_contents(db_state_dir() . '/primary'));
    return $named === $b ? [$b, $a] : [$a, $b];
}

// db_marked_down tells whether db-health has the server at $addr out (a marker file, checked
// every 500 ms), or the agent has quarantined it (its history diverged: never read from it).
function db_marked_down(string $addr): bool
{
    $dir = db_state_dir();
    if (is_file("$dir/$addr.down")) {
        return true;
    }
    $q = @file("$dir/quarantined", FILE_IGNORE_NEW_LINES | FILE_SKIP_EMPTY_LINES);
    return is_array($q) && in_array($addr, $q, true);
}

// db_available tells whether the server at $addr is worth a connection, without ever waiting
// more than $wait seconds: not if it is marked down, and not if it does not send its greeting
// within $wait now (a server that stopped or hung in the last half second, before db-health saw
// it). mysqli's own timeouts are whole seconds, and nginx gives a page 1 s.
function db_available(string $addr, float $wait = 0.15): bool
{
    if (db_marked_down($addr)) {
        return false;
    }
    $sock = @fsockopen($addr, 3306, $errno, $errstr, $wait);
    if ($sock === false) {
        return false;
    }
    stream_set_timeout($sock, 0, (int) ($wait * 1000000));
    $greeting = fread($sock, 5);
    fclose($sock);
    return is_string($greeting) && strlen($greeting) === 5 && ord($greeting[4]) === 10;
}

// MariaDB's "the server is read-only" (ER_OPTION_PREVENTS_STATEMENT): a write it refused, so
// one that surely did not happen.
const DB_READ_ONLY = 1290;

// db_write runs $write(mysqli) on the server that accepts writes: the primary the roles file
// names, else the other one (during a failover or a switchover, before the page sees the new
// roles file). Only one server is ever writable (the agent fences the old primary before it
// promotes), so trying both is safe. It retries only what surely did not write: a connection
// that could not be made, or a refusal because the server is read-only; for $patience seconds
// (a switchover pauses writes for less). A server is tried only when it greets within 200 ms,
// so a dead one costs no connect timeout: the page answers within 1 s. Returns [connection,
// address].
function db_write(callable $write, float $patience = 0.5): array
{
    $deadline = microtime(true) + $patience;
    $last = null;
    while (true) {
        foreach (db_roles() as $addr) {
            // An attempt may take 0.2 s (the greeting) and a little more: none starts once the
            // patience is spent, so the page answers well within nginx's 1 s.
            if ($last !== null && microtime(true) >= $deadline) {
                break;
            }
            if (!db_available($addr, 0.2)) {
                $last = $last ?? new RuntimeException("$addr is out (db-health) or sends no greeting within 200 ms");
                continue;
            }
            try {
                $db = db_connect($addr);
            } catch (mysqli_sql_exception $e) {
                $last = $e; // not connected: nothing was written
                continue;
            }
            try {
                $write($db);
                return [$db, $addr];
            } catch (mysqli_sql_exception $e) {
                $db->close();
                if ($e->getCode() !== DB_READ_ONLY) {
                    throw $e; // it may have written: never retried
                }
                $last = $e;
            }
        }
        if (microtime(true) >= $deadline) {
            throw $last ?? new RuntimeException('no database server is available for writes (db-health has both out)');
        }
        usleep(100000);
    }
}

function db_connect(string $host): mysqli
{
    $db = mysqli_init();
    $db->options(MYSQLI_OPT_CONNECT_TIMEOUT, 1);
    $db->options(MYSQLI_OPT_READ_TIMEOUT, 1);
    $db->real_connect($host, 'app', app_password(), 'app', 3306);
    $db->set_charset('utf8mb4');
    return $db;
}

function server_name(): string
{
    return getenv('WEB_SERVER_NAME') ?: gethostname();
}
