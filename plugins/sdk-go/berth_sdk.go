// berth_sdk.go: the conveniences of berth's Rust SDK for policies written in
// Go, and the component glue for the WIT world berth:policy/policy@0.3.0.
//
// It is part of the policy's own package main (Go's wasip1 port builds one
// module from one main package, and there is no module proxy to fetch a
// separate SDK from). A policy is a settings struct and one evaluate
// function:
//
//	type MySettings struct{ Label string `json:"label"` }
//
//	func (s *MySettings) Validate() error {
//		if s.Label == "" {
//			return &SettingsError{Field: "label", Message: "must not be empty"}
//		}
//		return nil
//	}
//
//	func evaluate(request *Request, settings *MySettings) (Verdict, error) { ... }
//
//	func init() { ExportPlugin(evaluate) }
//
// The names are the Rust SDK's, in Go's case: Request (Object, OldObject,
// RequireKind), Patch and Pointer, Verdict (Allow, Deny, DenyWithCode,
// Mutate, WithWarning), Settings and SettingsError, PolicyError, LogDebug.
//
// Build: GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared, then
// componentize-go.mjs (berth plugin build does both). The component glue is
// berth_sdk_wasip1.go, built only for wasip1; natively (go test),
// berth_sdk_native.go stands in for the host, so this file's logic tests
// without Wasm.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strings"
)

// PolicyError: evaluate could not reach a verdict (not a denial). berth
// applies the policy's failurePolicy to it.
type PolicyError struct{ Message string }

func (e *PolicyError) Error() string { return e.Message }

// SettingsError: a rejected setting, with the field it concerns
// (`label.key`); it reads `settings.label.key: ...`.
type SettingsError struct {
	Field   string
	Message string
}

func (e *SettingsError) Error() string {
	if e.Field == "" || e.Field == "." {
		return "settings: " + e.Message
	}
	return "settings." + e.Field + ": " + e.Message
}

// Settings is what a policy's settings type implements (on its pointer):
// checks that the JSON types cannot express.
type Settings interface {
	Validate() error
}

// Logging to berth's log, tagged with the policy's name.
func LogTrace(message string) { hostLogString(0, message) }
func LogDebug(message string) { hostLogString(1, message) }
func LogInfo(message string)  { hostLogString(2, message) }
func LogWarn(message string)  { hostLogString(3, message) }
func LogError(message string) { hostLogString(4, message) }

type GroupVersionKind struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Kind    string `json:"kind"`
}

type GroupVersionResource struct {
	Group    string `json:"group"`
	Version  string `json:"version"`
	Resource string `json:"resource"`
}

type UserInfo struct {
	Username string   `json:"username"`
	Groups   []string `json:"groups"`
}

// Context: what berth knows of the cluster, for a policy that asks for it
// in berth.yaml (`context:`).
type Context struct {
	DefaultStorageClass *string
}

// Request is the AdmissionRequest a policy judges. Its objects come apart
// from it, as JSON text, and are parsed only when asked for.
type Request struct {
	UID         string               `json:"uid"`
	Kind        GroupVersionKind     `json:"kind"`
	Resource    GroupVersionResource `json:"resource"`
	SubResource string               `json:"subResource"`
	Name        string               `json:"name"`
	Namespace   string               `json:"namespace"`
	// CREATE, UPDATE, DELETE or CONNECT.
	Operation string   `json:"operation"`
	UserInfo  UserInfo `json:"userInfo"`
	DryRun    bool     `json:"dryRun"`
	Context   Context  `json:"-"`

	object    *string
	oldObject *string
}

// ParseRequest reads the AdmissionRequest JSON (without its objects) and
// takes the objects' JSON texts, as evaluate gets them.
func ParseRequest(request string, object, oldObject *string, context Context) (*Request, error) {
	var parsed Request
	if err := json.Unmarshal([]byte(request), &parsed); err != nil {
		return nil, &PolicyError{"invalid AdmissionRequest: " + err.Error()}
	}
	parsed.object, parsed.oldObject = present(object), present(oldObject)
	parsed.Context = context
	return &parsed, nil
}

func present(text *string) *string {
	if text == nil || strings.TrimSpace(*text) == "null" {
		return nil
	}
	return text
}

// HasObject: whether the request carries an object (not on DELETE).
func (r *Request) HasObject() bool { return r.object != nil }

// Object parses the object being admitted into v (a struct with just the
// fields the policy reads; the rest is skipped).
func (r *Request) Object(v any) error { return r.parse("object", r.object, v) }

// OldObject parses the stored object (UPDATE and DELETE) into v.
func (r *Request) OldObject(v any) error { return r.parse("oldObject", r.oldObject, v) }

func (r *Request) parse(name string, text *string, v any) error {
	if text == nil {
		return &PolicyError{fmt.Sprintf("%s request has no %s", operationName(r.Operation), name)}
	}
	if err := json.Unmarshal([]byte(*text), v); err != nil {
		return &PolicyError{name + ": " + err.Error()}
	}
	return nil
}

// RequireKind fails unless the request is for a `kind` (`Pod`):
// `<plugin> applies to Pods, not PersistentVolumeClaim`.
func (r *Request) RequireKind(kind, plugin string) error {
	if r.Kind.Kind == kind {
		return nil
	}
	return &PolicyError{fmt.Sprintf("%s applies to %s, not %s", plugin, plural(kind), r.Kind.Kind)}
}

func operationName(operation string) string {
	if operation == "" {
		return operation
	}
	return operation[:1] + strings.ToLower(operation[1:])
}

func plural(kind string) string {
	for _, end := range []string{"s", "x", "z", "ch", "sh"} {
		if strings.HasSuffix(kind, end) {
			return kind + "es"
		}
	}
	if strings.HasSuffix(kind, "y") && !strings.ContainsAny(kind[len(kind)-2:len(kind)-1], "aeiou") {
		return kind[:len(kind)-1] + "ies"
	}
	return kind + "s"
}

// Pointer builds a JSON Pointer from raw segments, escaping ~ and /.
func Pointer(segments ...string) string {
	var out strings.Builder
	for _, segment := range segments {
		out.WriteByte('/')
		out.WriteString(strings.ReplaceAll(strings.ReplaceAll(segment, "~", "~0"), "/", "~1"))
	}
	return out.String()
}

// PatchOp is one RFC 6902 operation.
type PatchOp struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
	// remove has no value; a nil Value of add/replace/test is JSON null.
	hasValue bool
}

func (o PatchOp) MarshalJSON() ([]byte, error) {
	if !o.hasValue {
		return marshal(map[string]any{"op": o.Op, "path": o.Path})
	}
	return marshal(map[string]any{"op": o.Op, "path": o.Path, "value": o.Value})
}

// Patch is an RFC 6902 JSON Patch, built op by op; each method returns the
// patch, so calls chain.
type Patch struct{ Ops []PatchOp }

func NewPatch() *Patch { return &Patch{} }

func (p *Patch) Add(path string, value any) *Patch {
	p.Ops = append(p.Ops, PatchOp{Op: "add", Path: path, Value: value, hasValue: true})
	return p
}

func (p *Patch) Replace(path string, value any) *Patch {
	p.Ops = append(p.Ops, PatchOp{Op: "replace", Path: path, Value: value, hasValue: true})
	return p
}

func (p *Patch) Remove(path string) *Patch {
	p.Ops = append(p.Ops, PatchOp{Op: "remove", Path: path})
	return p
}

func (p *Patch) Test(path string, value any) *Patch {
	p.Ops = append(p.Ops, PatchOp{Op: "test", Path: path, Value: value, hasValue: true})
	return p
}

// Append adds items to the array at path, which holds `existing` items
// now: one add of the whole array when it is absent or empty, else one
// `add <path>/-` per item.
func (p *Patch) Append(path string, existing int, items ...any) *Patch {
	if len(items) == 0 {
		return p
	}
	if existing == 0 {
		return p.Add(path, items)
	}
	for _, item := range items {
		p.Add(path+"/-", item)
	}
	return p
}

func (p *Patch) IsEmpty() bool { return p == nil || len(p.Ops) == 0 }

// ToJSON is the patch as JSON text, as the WIT `mutate` carries it.
func (p *Patch) ToJSON() string {
	if p.IsEmpty() {
		return "[]"
	}
	text, err := marshal(p.Ops)
	if err != nil {
		panic(err)
	}
	return string(text)
}

// marshal is json.Marshal without HTML escaping (<, > and & stay as they are).
func marshal(v any) ([]byte, error) {
	var out bytes.Buffer
	encoder := json.NewEncoder(&out)
	encoder.SetEscapeHTML(false)
	if err := encoder.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(out.Bytes(), "\n"), nil
}

// Decision is Allow, Deny or Mutate.
type Decision int

const (
	Allow Decision = iota
	Deny
	Mutate
)

// Verdict is what a policy decided, with warnings for the user.
type Verdict struct {
	Decision Decision
	Message  string // Deny
	Code     uint16 // Deny
	Patch    *Patch // Mutate
	Warnings []string
}

func VerdictAllow() Verdict { return Verdict{Decision: Allow} }

// VerdictDeny denies with code 403.
func VerdictDeny(message string) Verdict { return VerdictDenyWithCode(message, 403) }

func VerdictDenyWithCode(message string, code uint16) Verdict {
	return Verdict{Decision: Deny, Message: message, Code: code}
}

// VerdictMutate mutates with patch; an empty patch is an allow.
func VerdictMutate(patch *Patch) Verdict {
	if patch.IsEmpty() {
		return VerdictAllow()
	}
	return Verdict{Decision: Mutate, Patch: patch}
}

func (v Verdict) WithWarning(warning string) Verdict {
	v.Warnings = append(v.Warnings, warning)
	return v
}

func (v Verdict) IsAllowed() bool { return v.Decision != Deny }

// ParseSettings reads settings JSON into a new S, refusing unknown fields
// and naming the field of any error, then validates it.
func ParseSettings[S any, P interface {
	*S
	Settings
}](text string) (*S, error) {
	var raw any
	if err := json.Unmarshal([]byte(text), &raw); err != nil {
		return nil, &SettingsError{"", "invalid JSON: " + err.Error()}
	}
	settings := new(S)
	if err := checkFields(reflect.TypeOf(settings).Elem(), raw, ""); err != nil {
		return nil, err
	}
	if err := json.Unmarshal([]byte(text), settings); err != nil {
		field := ""
		if typeErr, ok := err.(*json.UnmarshalTypeError); ok {
			field = typeErr.Field
			err = fmt.Errorf("invalid type: %s, expected %s", typeErr.Value, typeErr.Type)
		}
		return nil, &SettingsError{field, err.Error()}
	}
	if err := P(settings).Validate(); err != nil {
		return nil, err
	}
	return settings, nil
}

// checkFields refuses JSON object fields the Go type does not declare, and
// required (non-omitempty, non-pointer) fields that are missing.
func checkFields(t reflect.Type, value any, field string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	at := func(name string) string {
		if field == "" {
			return name
		}
		return field + "." + name
	}
	switch t.Kind() {
	case reflect.Struct:
		object, ok := value.(map[string]any)
		if !ok {
			return nil // the type error comes from json.Unmarshal
		}
		known := map[string]reflect.StructField{}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			known[name] = f
			names = append(names, name)
		}
		keys := make([]string, 0, len(object))
		for key := range object {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			if _, ok := known[key]; !ok {
				return &SettingsError{at(key), fmt.Sprintf("unknown field `%s`, %s", key, expectedFields(names))}
			}
		}
		for _, name := range names {
			f := known[name]
			inner, present := object[name]
			optional := f.Type.Kind() == reflect.Pointer || strings.Contains(f.Tag.Get("json"), ",omitempty")
			if !present && !optional {
				return &SettingsError{field, fmt.Sprintf("missing field `%s`", name)}
			}
			if present {
				if err := checkFields(f.Type, inner, at(name)); err != nil {
					return err
				}
			}
		}
	case reflect.Slice, reflect.Array:
		if list, ok := value.([]any); ok {
			for i, item := range list {
				if err := checkFields(t.Elem(), item, fmt.Sprintf("%s[%d]", field, i)); err != nil {
					return err
				}
			}
		}
	case reflect.Map:
		if object, ok := value.(map[string]any); ok {
			for key, item := range object {
				if err := checkFields(t.Elem(), item, at(key)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// As serde words it, so every language reads alike.
func expectedFields(known []string) string {
	quoted := make([]string, len(known))
	for i, k := range known {
		quoted[i] = "`" + k + "`"
	}
	switch len(quoted) {
	case 0:
		return "there are no fields"
	case 1:
		return "expected " + quoted[0]
	case 2:
		return "expected " + quoted[0] + " or " + quoted[1]
	}
	return "expected one of " + strings.Join(quoted, ", ")
}

// The plugin ExportPlugin installs: its settings parser and evaluate.
var plugin struct {
	parse    func(string) (any, error)
	evaluate func(*Request, any) (Verdict, error)
	// The last settings parsed, with their text: berth calls a warm
	// instance with the same settings again and again. Nothing of a request.
	lastText     *string
	lastSettings any
}

// ExportPlugin makes evaluate, with its settings type, the component's
// exports (Rust: export_plugin!). Call it from init().
func ExportPlugin[S any, P interface {
	*S
	Settings
}](evaluate func(*Request, P) (Verdict, error)) {
	plugin.parse = func(text string) (any, error) { return ParseSettings[S, P](text) }
	plugin.evaluate = func(request *Request, settings any) (Verdict, error) {
		return evaluate(request, P(settings.(*S)))
	}
}

func parsedSettings(text string) (any, error) {
	if plugin.lastText == nil || *plugin.lastText != text {
		settings, err := plugin.parse(text)
		if err != nil {
			return nil, err
		}
		plugin.lastText, plugin.lastSettings = &text, settings
	}
	return plugin.lastSettings, nil
}


// Checks for Kubernetes names and labels, for settings that name objects or
// labels (Rust: berth_sdk::names). Each returns nil, or an error whose text
// says what is wrong, the same words as the Rust SDK's.

// CheckDNSSubdomain: a DNS subdomain (RFC 1123), as most Kubernetes object
// names are (Secrets, StorageClasses, ...).
func CheckDNSSubdomain(name string) error {
	if len(name) == 0 || len(name) > 253 {
		return errors.New("must have 1 to 253 characters")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || !isLowerAlnum(label[0]) || !isLowerAlnum(label[len(label)-1]) {
			return errors.New("each '.'-separated part must start and end with a lowercase letter or digit")
		}
		for i := 0; i < len(label); i++ {
			if !isLowerAlnum(label[i]) && label[i] != '-' {
				return errors.New("may have only lowercase letters, digits, '-' and '.'")
			}
		}
	}
	return nil
}

// CheckLabelKey: a label key is an optional DNS-subdomain prefix and `/`,
// then a name of 1 to 63 alphanumerics, `-`, `_` and `.`, alphanumeric at
// both ends.
func CheckLabelKey(key string) error {
	name := key
	if slash := strings.LastIndexByte(key, '/'); slash >= 0 {
		if CheckDNSSubdomain(key[:slash]) != nil {
			return errors.New("its prefix (before '/') must be a DNS subdomain")
		}
		name = key[slash+1:]
	}
	if name == "" {
		return errors.New("must have a name (after any prefix)")
	}
	if CheckLabelValue(name) != nil {
		return errors.New("its name must have 1 to 63 letters, digits, '-', '_' or '.', a letter or digit at each end")
	}
	return nil
}

// CheckLabelValue: a label value is empty, or 1 to 63 alphanumerics, `-`,
// `_` and `.`, alphanumeric at both ends.
func CheckLabelValue(value string) error {
	ok := len(value) <= 63
	for i := 0; ok && i < len(value); i++ {
		b := value[i]
		ok = isAlnum(b) || b == '-' || b == '_' || b == '.'
	}
	if !ok || value != "" && (!isAlnum(value[0]) || !isAlnum(value[len(value)-1])) {
		return errors.New("must have at most 63 letters, digits, '-', '_' or '.', a letter or digit at each end")
	}
	return nil
}

func isLowerAlnum(b byte) bool { return 'a' <= b && b <= 'z' || '0' <= b && b <= '9' }

func isAlnum(b byte) bool { return isLowerAlnum(b) || 'A' <= b && b <= 'Z' }

// A c-shared (reactor) module still needs a main.
func main() {}
