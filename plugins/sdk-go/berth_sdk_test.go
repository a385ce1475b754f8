// The SDK's own tests, natively (go test in this directory); berth's Rust
// suite runs them (tests/suites/authors.rs). berth plugin new leaves them out.
package main

import (
	"errors"
	"strings"
	"testing"
)

func TestPointerEscapesTildeAndSlash(t *testing.T) {
	got := Pointer("metadata", "labels", "example.com/checked", "a~b")
	if want := "/metadata/labels/example.com~1checked/a~0b"; got != want {
		t.Fatalf("Pointer: %q, want %q", got, want)
	}
	if got := Pointer("~1"); got != "/~01" {
		t.Fatalf("~ is escaped before /: %q", got)
	}
}

func TestPatchJSON(t *testing.T) {
	patch := NewPatch().Add("/a", map[string]string{"k": "<v>"}).Replace("/b", nil).Remove("/c").Test("/d", 1)
	want := `[{"op":"add","path":"/a","value":{"k":"<v>"}},{"op":"replace","path":"/b","value":null},` +
		`{"op":"remove","path":"/c"},{"op":"test","path":"/d","value":1}]`
	if got := patch.ToJSON(); got != want {
		t.Fatalf("ToJSON:\n%s\nwant\n%s", got, want)
	}
	if got := NewPatch().ToJSON(); got != "[]" {
		t.Fatalf("empty patch: %s", got)
	}
	if got := NewPatch().Append("/l", 0, "x", "y").ToJSON(); got != `[{"op":"add","path":"/l","value":["x","y"]}]` {
		t.Fatalf("Append to an empty list: %s", got)
	}
	if got := NewPatch().Append("/l", 2, "x", "y").ToJSON(); got != `[{"op":"add","path":"/l/-","value":"x"},{"op":"add","path":"/l/-","value":"y"}]` {
		t.Fatalf("Append to a list: %s", got)
	}
}

func TestVerdictShapes(t *testing.T) {
	if v := VerdictAllow(); v.Decision != Allow || !v.IsAllowed() {
		t.Fatalf("allow: %+v", v)
	}
	deny := VerdictDeny("no").WithWarning("careful")
	if deny.Decision != Deny || deny.Message != "no" || deny.Code != 403 || deny.IsAllowed() {
		t.Fatalf("deny: %+v", deny)
	}
	if len(deny.Warnings) != 1 || deny.Warnings[0] != "careful" {
		t.Fatalf("warnings: %v", deny.Warnings)
	}
	if v := VerdictDenyWithCode("gone", 410); v.Code != 410 || v.Message != "gone" {
		t.Fatalf("deny with code: %+v", v)
	}
	if v := VerdictMutate(NewPatch()); v.Decision != Allow {
		t.Fatalf("an empty patch is an allow: %+v", v)
	}
	if v := VerdictMutate(NewPatch().Add("/x", 1)); v.Decision != Mutate || v.Patch.ToJSON() != `[{"op":"add","path":"/x","value":1}]` {
		t.Fatalf("mutate: %+v", v)
	}
}

type testLabel struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type testSettings struct {
	Label testLabel `json:"label"`
	Count *int      `json:"count"`
}

func (s *testSettings) Validate() error {
	if err := CheckLabelKey(s.Label.Key); err != nil {
		return &SettingsError{Field: "label.key", Message: err.Error()}
	}
	return nil
}

func TestSettingsErrorsNameTheField(t *testing.T) {
	cases := map[string]string{
		`{"label": {"key": "a", "value": "b", "extra": 1}}`: "settings.label.extra: unknown field `extra`, expected `key` or `value`",
		`{"label": {"key": "a"}}`:                           "settings.label: missing field `value`",
		`{}`:                                                "settings: missing field `label`",
		`{"label": {"key": 1, "value": "b"}}`:               "settings.label.key: invalid type: number, expected string",
		`{"label": {"key": "Ex.com/x", "value": "b"}}`:      "settings.label.key: its prefix (before '/') must be a DNS subdomain",
		`{"label": `:                                        "settings: invalid JSON: unexpected end of JSON input",
	}
	for text, want := range cases {
		_, err := ParseSettings[testSettings](text)
		if err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", text, err, want)
		}
	}
	settings, err := ParseSettings[testSettings](`{"label": {"key": "example.com/checked", "value": "true"}, "count": 2}`)
	if err != nil || settings.Label.Key != "example.com/checked" || *settings.Count != 2 {
		t.Fatalf("good settings: %+v, %v", settings, err)
	}
}

// The cases of plugins/sdk/src/names.rs, and the messages word for word.
func TestNamesAsTheRustSDK(t *testing.T) {
	for _, good := range []string{"regsecret", "local-storage", "a.b-c.d", "0x"} {
		if err := CheckDNSSubdomain(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
	for _, bad := range []string{"", "Reg", "-a", "a-", "a..b", "a_b", strings.Repeat("a", 254)} {
		if CheckDNSSubdomain(bad) == nil {
			t.Errorf("%q passes", bad)
		}
	}
	for _, good := range []string{"app", "example.com/checked", "a.b/C_d-1", strings.Repeat("k", 63)} {
		if err := CheckLabelKey(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
	for _, bad := range []string{"", "/x", "Ex.com/x", "a/", "-a", "a b", strings.Repeat("k", 64), "a/b/c"} {
		if CheckLabelKey(bad) == nil {
			t.Errorf("%q passes", bad)
		}
	}
	for _, good := range []string{"", "true", "v1.2_3-x"} {
		if err := CheckLabelValue(good); err != nil {
			t.Errorf("%q: %v", good, err)
		}
	}
	for _, bad := range []string{"-x", "x.", "a b", strings.Repeat("v", 64)} {
		if CheckLabelValue(bad) == nil {
			t.Errorf("%q passes", bad)
		}
	}
	messages := []struct {
		err  error
		want string
	}{
		{CheckDNSSubdomain(""), "must have 1 to 253 characters"},
		{CheckDNSSubdomain("a..b"), "each '.'-separated part must start and end with a lowercase letter or digit"},
		{CheckDNSSubdomain("a_b"), "may have only lowercase letters, digits, '-' and '.'"},
		{CheckLabelKey("Ex.com/x"), "its prefix (before '/') must be a DNS subdomain"},
		{CheckLabelKey("a/"), "must have a name (after any prefix)"},
		{CheckLabelKey("a b"), "its name must have 1 to 63 letters, digits, '-', '_' or '.', a letter or digit at each end"},
		{CheckLabelValue("x."), "must have at most 63 letters, digits, '-', '_' or '.', a letter or digit at each end"},
	}
	for _, m := range messages {
		if m.err == nil || m.err.Error() != m.want {
			t.Errorf("%v, want %q", m.err, m.want)
		}
	}
}

func TestRequestParsesItsObjectsOnlyWhenAsked(t *testing.T) {
	broken := `{"metadata": `
	request, err := ParseRequest(`{"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE"}`, &broken, nil, Context{})
	if err != nil {
		t.Fatalf("a broken object is not read until asked for: %v", err)
	}
	if !request.HasObject() || request.UID != "u" || request.Kind.Kind != "Pod" {
		t.Fatalf("request: %+v", request)
	}
	var v map[string]any
	err = request.Object(&v)
	var policyErr *PolicyError
	if !errors.As(err, &policyErr) || !strings.HasPrefix(err.Error(), "object: ") {
		t.Fatalf("object: %v", err)
	}
	if err := request.OldObject(&v); err == nil || err.Error() != "Create request has no oldObject" {
		t.Fatalf("old object: %v", err)
	}
	null := "null"
	deleted, _ := ParseRequest(`{"operation": "DELETE"}`, &null, nil, Context{})
	if deleted.HasObject() {
		t.Fatal("a null object is no object")
	}
	good := `{"metadata": {"name": "p"}}`
	request, _ = ParseRequest(`{"operation": "CREATE"}`, &good, nil, Context{})
	var object struct {
		Metadata struct{ Name string } `json:"metadata"`
	}
	if err := request.Object(&object); err != nil || object.Metadata.Name != "p" {
		t.Fatalf("object: %+v, %v", object, err)
	}
}

func TestRequireKindSaysWhatItAppliesTo(t *testing.T) {
	request, _ := ParseRequest(`{"kind": {"kind": "PersistentVolumeClaim"}}`, nil, nil, Context{})
	err := request.RequireKind("Pod", "pod-policy")
	if err == nil || err.Error() != "pod-policy applies to Pods, not PersistentVolumeClaim" {
		t.Fatalf("RequireKind: %v", err)
	}
	if err := request.RequireKind("Ingress", "p"); err == nil || !strings.Contains(err.Error(), "applies to Ingresses,") {
		t.Fatalf("plural: %v", err)
	}
	if err := request.RequireKind("NetworkPolicy", "p"); err == nil || !strings.Contains(err.Error(), "applies to NetworkPolicies,") {
		t.Fatalf("plural: %v", err)
	}
	if err := request.RequireKind("PersistentVolumeClaim", "p"); err != nil {
		t.Fatalf("the right kind: %v", err)
	}
}

func TestLogGoesToTheHost(t *testing.T) {
	var lines []string
	saved := hostLogSink
	defer func() { hostLogSink = saved }()
	hostLogSink = func(level int32, message string) { lines = append(lines, string(rune('0'+level))+" "+message) }
	LogDebug("judged 2 images")
	LogError("oops")
	if strings.Join(lines, "|") != "1 judged 2 images|4 oops" {
		t.Fatalf("log lines: %v", lines)
	}
}
