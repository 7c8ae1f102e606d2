<?php
// The load-balanced page: says which server answered, records the visit on the primary, reads
// the newest visit back from the replica and reports how far the replica is behind.
// ?format=json returns the same facts for scripts and tests.
require __DIR__ . '/db.php';

$server = server_name();
$result = ['server' => $server, 'visit_id' => null, 'latest_visit' => null,
           'read_from' => null, 'replica_in_sync' => null, 'primary_gtid' => null,
           'replica_gtid' => null, 'errors' => []];
$status = 200;

// A database error's text names tables, hosts and accounts: it goes to the log (Apache's error
// log, the container's output), the page says only which part is unavailable.
$fail = function (string $part, Throwable $e) use (&$result) {
    error_log("hastack page: $part: " . $e->getMessage());
    $result['errors'][] = "$part: unavailable";
};

// ?write=0 only reads (no visit recorded): a reader's view, for availability measurements.
$write = ($_GET['write'] ?? '1') !== '0';
[$primaryHost, $replicaHost] = db_roles();
$primary = null;
if ($write) {
    try {
        $client = substr($_SERVER['REMOTE_ADDR'] ?? '', 0, 64);
        [$primary, $primaryHost] = db_write(function (mysqli $db) use ($server, $client, &$result) {
            $stmt = $db->prepare('INSERT INTO visits (server, client) VALUES (?, ?)');
            $stmt->bind_param('ss', $server, $client);
            $stmt->execute();
            $result['visit_id'] = $db->insert_id;
        });
        $result['primary_gtid'] = $primary->query('SELECT @@gtid_binlog_pos')->fetch_row()[0];
    } catch (Throwable $e) {
        $status = 503;
        $fail('primary', $e);
    }
}

// Reads go to the replica unless it is out (marked by db-health, quarantined, or silent for
// 150 ms), then to the primary. When neither answers that way (a promotion in progress: the
// primary dead, the replica busy for an instant), the replica is tried once more with the
// normal connect timeout: a slower read rather than none.
// The newest visit the reader holds: one step down the primary key's index, whatever the
// table's size (COUNT(*) reads every row: the page got slower with every visit it recorded).
$latest = fn(mysqli $db) => (int) $db->query('SELECT MAX(id) FROM visits')->fetch_row()[0];
try {
    if (!db_available($replicaHost)) {
        throw new RuntimeException("replica $replicaHost is out (db-health, quarantined) or sends no greeting within 150 ms");
    }
    $reader = db_connect($replicaHost);
    // Compared with the write's position only: a reader does not ask (@@gtid_slave_pos waits
    // while the replica's threads stop, as in a promotion).
    if ($write) {
        $result['replica_gtid'] = $reader->query('SELECT @@gtid_slave_pos')->fetch_row()[0];
        if ($result['primary_gtid'] !== null) {
            $result['replica_in_sync'] = $result['replica_gtid'] === $result['primary_gtid'];
        }
    }
    $result['latest_visit'] = $latest($reader);
    $result['read_from'] = 'replica';
} catch (Throwable $e) {
    $fail('replica', $e);
    try {
        if ($primary === null && !db_available($primaryHost)) {
            throw new RuntimeException("primary $primaryHost is out (db-health) or sends no greeting within 150 ms");
        }
        $result['latest_visit'] = $latest($primary ?? db_connect($primaryHost));
        $result['read_from'] = 'primary';
    } catch (Throwable $e) {
        $fail('primary', $e);
        // Once more with the normal connect timeout: the replica, or the primary when db-health
        // has the replica out (a promotion's instant: the old primary dead and out, the new one
        // slow to greet under the writes that come back at once).
        $last = db_marked_down($replicaHost) ? $primaryHost : $replicaHost;
        try {
            if (db_marked_down($last)) {
                throw new RuntimeException("both servers are out (db-health)");
            }
            $result['latest_visit'] = $latest(db_connect($last));
            $result['read_from'] = $last === $replicaHost ? 'replica' : 'primary';
        } catch (Throwable $e) {
            $fail('read', $e);
        }
    }
}
if (!$write && $result['latest_visit'] === null) {
    $status = 503;
}

http_response_code($status);
header('Cache-Control: no-store');
header('X-Served-By: ' . $server);

if (($_GET['format'] ?? '') === 'json') {
    header('Content-Type: application/json');
    echo json_encode($result, JSON_PRETTY_PRINT | JSON_UNESCAPED_SLASHES), "\n";
    exit;
}

$h = fn($v) => htmlspecialchars((string) $v, ENT_QUOTES);
$sync = match ($result['replica_in_sync']) {
    true => 'in sync (GTID ' . $h($result['replica_gtid']) . ')',
    false => 'behind: primary at ' . $h($result['primary_gtid']) . ', replica at ' . $h($result['replica_gtid']),
    default => 'unknown',
};
?>
<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title><?= $h($server) ?></title></head>
<body>
<h1><?= $h($server) ?></h1>
<p>This page was served by <strong><?= $h($server) ?></strong>.</p>
<ul>
  <li>Visit recorded on the primary: #<?= $h($result['visit_id'] ?? '-') ?></li>
  <li>Newest visit on the <?= $h($result['read_from'] ?? 'database') ?>: #<?= $h($result['latest_visit'] ?? '-') ?></li>
  <li>Replication: <?= $sync ?></li>
</ul>
<?php foreach ($result['errors'] as $err): ?>
<p class="error">Database problem: <?= $h($err) ?></p>
<?php endforeach; ?>
</body>
</html>
