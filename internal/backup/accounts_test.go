package backup

import (
	"io"
	"strings"
	"testing"
)

func TestKeepAccounts(t *testing.T) {
	long := "INSERT INTO `t` VALUES (1,'" + strings.Repeat("GRANT x TO `root`@`localhost`", 10000) + "');\n"
	dump := "USE `app`;\n" +
		"CREATE USER `root`@`localhost` IDENTIFIED VIA mysql_native_password USING 'invalid' OR unix_socket;\n" +
		"CREATE USER `u`@`%` IDENTIFIED BY PASSWORD '*B69027D44F6E5EDC07F1AEAD1477967B16F28227';\n" +
		"CREATE USER IF NOT EXISTS `app`@`%` IDENTIFIED BY PASSWORD '*AAA';\n" +
		"SELECT COALESCE(CURRENT_ROLE(),'NONE') into @current_role;\n" +
		"CREATE ROLE IF NOT EXISTS mariadb_dump_import_role;\n" +
		"GRANT mariadb_dump_import_role TO CURRENT_USER();\n" +
		"SET ROLE mariadb_dump_import_role;\n" +
		"GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` IDENTIFIED VIA mysql_native_password USING 'invalid' OR unix_socket WITH GRANT OPTION;\n" +
		"GRANT PROXY ON ``@`%` TO `root`@`localhost` WITH GRANT OPTION;\n" +
		"/*M!100005 SET DEFAULT ROLE NONE FOR 'root'@'localhost' */;\n" +
		"/*!80001 ALTER USER 'root'@'localhost' DEFAULT ROLE NONE */;\n" +
		"GRANT SELECT ON `app`.* TO `u`@`%`;\n" +
		"GRANT SELECT, INSERT ON `app`.* TO `app`@`%`;\n" +
		"GRANT SELECT ON `o'd`.* TO 'it''s'@'h';\n" +
		"SET ROLE NONE;\n" +
		"DROP ROLE mariadb_dump_import_role;\n" +
		"/*M!100203 EXECUTE IMMEDIATE CONCAT('SET ROLE ', @current_role) */;\n" +
		long +
		"-- Dump completed\n"
	keep := map[Account]bool{{"root", "localhost"}: true, {"app", "%"}: true, {"it's", "h"}: true}
	f := newKeepAccounts(strings.NewReader(dump), keep)
	out, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	want := "USE `app`;\n" +
		"CREATE USER `u`@`%` IDENTIFIED BY PASSWORD '*B69027D44F6E5EDC07F1AEAD1477967B16F28227';\n" +
		"GRANT SELECT ON `app`.* TO `u`@`%`;\n" +
		long +
		"-- Dump completed\n"
	if string(out) != want {
		t.Fatalf("got\n%.2000s\nwant\n%.2000s", out, want)
	}
	if len(f.Skipped) != 3 {
		t.Fatalf("skipped %v", f.Skipped)
	}
}

func TestParseAccount(t *testing.T) {
	for in, want := range map[string]Account{
		"`root`@`localhost` IDENTIFIED": {"root", "localhost"},
		"'a''b'@'%' */;":                {"a'b", "%"},
		`'a\'b'@'h'`:                    {"a'b", "h"},
		"`x``y`@``":                     {"x`y", ""},
	} {
		got, ok := parseAccount(in)
		if !ok || got != want {
			t.Errorf("parseAccount(%q) = %v, %v; want %v", in, got, ok, want)
		}
	}
	for _, bad := range []string{"", "root@localhost", "`root`", "`root`@", "`unterminated@`h`"} {
		if a, ok := parseAccount(bad); ok {
			t.Errorf("parseAccount(%q) = %v, want failure", bad, a)
		}
	}
}
