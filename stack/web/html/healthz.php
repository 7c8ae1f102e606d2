<?php
// Liveness of this web server for Docker and the load balancer. It does not depend on the
// database: a database outage must not take both backends out of the load balancer.
require __DIR__ . '/db.php';
header('Content-Type: application/json');
header('Cache-Control: no-store');
echo json_encode(['status' => 'ok', 'server' => server_name()]), "\n";
