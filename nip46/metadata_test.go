package nip46

import (
	"errors"
	"strings"
	"testing"
)

func TestParseClientMetadata(t *testing.T) {
	long := strings.Repeat("n", MaxClientNameBytes+1)
	cases := []struct {
		raw     string
		want    ClientMetadata
		errWant string // "" for no error
	}{
		{"", ClientMetadata{}, ""},
		{`{}`, ClientMetadata{}, ""},
		{`{"name":"Primal","url":"https://primal.net","image":"https://primal.net/i.png"}`,
			ClientMetadata{Name: "Primal", URL: "https://primal.net", Image: "https://primal.net/i.png"}, ""},
		// Fields beyond {name,url,image} (older clients send description, icons) are ignored.
		{`{"name":"App","description":"x","icons":["https://a/i"]}`, ClientMetadata{Name: "App"}, ""},
		{`{"name":null,"url":"http://127.0.0.1:8080/app"}`, ClientMetadata{URL: "http://127.0.0.1:8080/app"}, ""},
		{`not json`, ClientMetadata{}, "not a JSON object"},
		{`["name"]`, ClientMetadata{}, "not a JSON object"},
		{`null`, ClientMetadata{}, "not a JSON object"},
		{`"Primal"`, ClientMetadata{}, "not a JSON object"},
		{`{"name":7,"url":"https://ok.example"}`, ClientMetadata{URL: "https://ok.example"}, "name is not a string"},
		{`{"name":"ok","url":"javascript:alert(1)"}`, ClientMetadata{Name: "ok"}, "url is not an http"},
		{`{"name":"ok","image":"data:image/png;base64,AAAA"}`, ClientMetadata{Name: "ok"}, "image is not an http"},
		{`{"url":"https://user:pw@evil.example"}`, ClientMetadata{}, "no user info"},
		{`{"url":"https:///nohost"}`, ClientMetadata{}, "must name a host"},
		{`{"url":"https://a.example/x y"}`, ClientMetadata{}, "spaces"},
		{`{"name":"` + long + `"}`, ClientMetadata{}, "name longer than"},
		{`{"name":"evil\u001b[2Jname"}`, ClientMetadata{}, "control characters"},
		{`{"url":"https://a.example/` + strings.Repeat("p", MaxClientURLBytes) + `"}`, ClientMetadata{}, "url longer than"},
		{`{"name":"` + strings.Repeat("x", MaxClientMetadataBytes) + `"}`, ClientMetadata{}, "longer than 4096 bytes"},
	}
	for _, c := range cases {
		got, err := ParseClientMetadata(c.raw)
		if got != c.want {
			t.Errorf("ParseClientMetadata(%.60q) = %+v, want %+v", c.raw, got, c.want)
		}
		switch {
		case c.errWant == "" && err != nil:
			t.Errorf("ParseClientMetadata(%.60q): unexpected error %v", c.raw, err)
		case c.errWant != "" && (!errors.Is(err, ErrBadClientMetadata) || !strings.Contains(err.Error(), c.errWant)):
			t.Errorf("ParseClientMetadata(%.60q): error %v, want %q", c.raw, err, c.errWant)
		}
	}
}

func TestClientMetadataJSONRoundTrip(t *testing.T) {
	m := ClientMetadata{Name: "n", URL: "https://u.example"}
	got, err := ParseClientMetadata(m.JSON())
	if err != nil || got != m {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	if (ClientMetadata{}).JSON() != "" {
		t.Fatal("empty metadata encodes to something")
	}
}

func FuzzParseClientMetadata(f *testing.F) {
	f.Add(`{"name":"Primal","url":"https://primal.net"}`)
	f.Add(`{"image":"http://[::1]:80/x"}`)
	f.Add(`{"name":"\u0000"}`)
	f.Fuzz(func(t *testing.T, raw string) {
		m, err := ParseClientMetadata(raw)
		if err != nil && !errors.Is(err, ErrBadClientMetadata) {
			t.Fatalf("error not ErrBadClientMetadata: %v", err)
		}
		// Whatever comes back is valid and survives a round trip.
		if v, verr := m.Validate(); verr != nil || v != m {
			t.Fatalf("returned metadata %+v does not validate: %v", m, verr)
		}
		if len(m.Name) > MaxClientNameBytes || len(m.URL) > MaxClientURLBytes || len(m.Image) > MaxClientURLBytes {
			t.Fatalf("oversized field kept: %+v", m)
		}
	})
}
