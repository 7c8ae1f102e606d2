package backup

import (
	"maps"
	"strings"
	"testing"
)

const sampleDump = "-- MariaDB dump 10.19  Distrib 11.8.3-MariaDB\n" +
	"/*M!999999\\- enable the sandbox mode */ \n" +
	"CREATE DATABASE /*!32312 IF NOT EXISTS*/ `app` /*!40100 DEFAULT CHARACTER SET utf8mb4 */;\n" +
	"USE `app`;\n" +
	"DROP TABLE IF EXISTS `visits`;\n" +
	"CREATE TABLE `visits` (\n  `id` bigint(20) unsigned NOT NULL AUTO_INCREMENT,\n  `server` varchar(32) NOT NULL,\n  PRIMARY KEY (`id`)\n) ENGINE=InnoDB;\n" +
	"LOCK TABLES `visits` WRITE;\n" +
	"INSERT INTO `visits` VALUES (1,'Webserver1'),(2,'it\\'s (not) a tuple'),(3,'line\\nbreak \\\\'),(4,0x28292C);\n" +
	"INSERT INTO `visits` VALUES\n(5,'a'),\n(6,'b;');\n" +
	"UNLOCK TABLES;\n" +
	"CREATE TABLE `empty` (\n  `x` int\n);\n" +
	"CREATE TABLE `we``ird` (`v` text);\n" +
	"INSERT INTO `we``ird` VALUES ('(('),(')),');\n" +
	"USE `shop`;\n" +
	"CREATE TABLE `visits` (`id` int);\n" +
	"INSERT INTO `visits` VALUES (1);\n"

func TestRowCounter(t *testing.T) {
	want := map[TableName]int64{{"app", "visits"}: 6, {"app", "empty"}: 0, {"app", "we`ird"}: 2, {"shop", "visits"}: 1}
	// Whole, and byte by byte: a line split across writes anywhere must count the same.
	whole := NewRowCounter()
	whole.Write([]byte(sampleDump))
	if got := whole.Tables(); !maps.Equal(got, want) {
		t.Fatalf("whole: %v, want %v", got, want)
	}
	bytewise := NewRowCounter()
	for i := 0; i < len(sampleDump); i++ {
		bytewise.Write([]byte{sampleDump[i]})
	}
	if got := bytewise.Tables(); !maps.Equal(got, want) {
		t.Fatalf("byte by byte: %v, want %v", got, want)
	}
}

func TestRowCounterLongLinesUseBoundedMemory(t *testing.T) {
	c := NewRowCounter()
	c.Write([]byte("USE `d`;\nINSERT INTO `t` VALUES "))
	row := []byte("(1,'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'),")
	for range 100000 { // one 10 MB line
		c.Write(row)
	}
	c.Write([]byte("(2,'z');\n"))
	if got := c.Tables()[TableName{"d", "t"}]; got != 100001 {
		t.Fatalf("rows %d, want 100001", got)
	}
	if cap(c.head) > 2*headMax {
		t.Fatalf("line buffer grew to %d bytes", cap(c.head))
	}
}

// Only the last non-empty line counts as mariadb-dump's closing line.
func TestRowCounterCompleted(t *testing.T) {
	const done = "-- Dump completed on 2026-11-25 18:34:27\n"
	for _, tc := range []struct {
		name string
		dump string
		want bool
	}{
		{"real", realHeader + sampleDump + realTrailer, true},
		{"blank lines after it", sampleDump + done + "\n  \r\n\t\n", true},
		{"cut short", realHeader + sampleDump, false},
		{"more SQL after it", sampleDump + done + "DROP DATABASE app;\n", false},
		{"more SQL after it, no newline", sampleDump + done + "DROP DATABASE app;", false},
		{"a comment after it", sampleDump + done + "-- nothing\n", false},
		{"without its newline", sampleDump + strings.TrimSuffix(done, "\n"), false},
		{"not a comment", sampleDump + "Dump completed on 2026-11-25\n", false},
		{"inside a table's data", "USE `a`;\nINSERT INTO `t` VALUES ('x\n" + done + "');\n", false},
		{"a data line that ends the dump after it", sampleDump + done + "INSERT INTO `visits` VALUES (9,'z');\n", false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			whole := NewRowCounter()
			whole.Write([]byte(tc.dump))
			bytewise := NewRowCounter()
			for i := range len(tc.dump) {
				bytewise.Write([]byte{tc.dump[i]})
			}
			if whole.Completed() != tc.want || bytewise.Completed() != tc.want {
				t.Fatalf("Completed() = %t (byte by byte %t), want %t", whole.Completed(), bytewise.Completed(), tc.want)
			}
		})
	}
}
