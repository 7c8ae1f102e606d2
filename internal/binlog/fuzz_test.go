package binlog

import (
	"reflect"
	"testing"
	"time"
)

// FuzzDecodeSegmentManifest: any bytes either decode into a valid manifest whose encoding
// decodes to the same manifest, or fail. Run it:
//
//	go test -run='^$' -fuzz='^FuzzDecodeSegmentManifest$' -fuzztime=20s ./internal/binlog/
func FuzzDecodeSegmentManifest(f *testing.F) {
	for _, m := range []Manifest{
		validManifest(),
		{Version: ManifestVersion, Start: pos("0-1-5,1-2-3"), End: pos("0-1-5,1-2-3"), Written: time.Unix(5, 0).UTC(), Reason: "step back"},
	} {
		b, err := m.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"version":1,"start":"","end":"0-1-1"}`))
	f.Add([]byte(`{"version":2}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeManifest(data)
		if err != nil {
			return
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("DecodeManifest returned an invalid manifest: %v", err)
		}
		enc, err := m.Encode()
		if err != nil {
			t.Fatalf("Encode of a decoded manifest: %v", err)
		}
		back, err := DecodeManifest(enc)
		if err != nil {
			t.Fatalf("decode the encoding of a decoded manifest: %v\n%s", err, enc)
		}
		if !reflect.DeepEqual(normalized(back), normalized(m)) {
			t.Fatalf("round trip changed it:\n%+v\n%+v", m, back)
		}
		// Its key is one this package parses back.
		base := baseKey(m.Start, m.End, m.Written)
		if k, _, ok := parseKey(manifestKey(base)); ok && m.matchesKey(k) != nil {
			t.Fatalf("manifest does not match its own key %s", base)
		}
	})
}

// normalized drops what JSON does not keep: time zones (decoded times are in the zone their
// text says) and nil versus empty positions.
func normalized(m Manifest) Manifest {
	m.FirstTime, m.LastTime, m.Written = m.FirstTime.UTC(), m.LastTime.UTC(), m.Written.UTC()
	if len(m.Start) == 0 {
		m.Start = nil
	}
	if len(m.End) == 0 {
		m.End = nil
	}
	return m
}
