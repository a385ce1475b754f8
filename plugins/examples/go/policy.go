// sample-policy
//
// Labels every object it is given, and refuses Pods whose images float: an
// image tagged `:latest`, or with neither a tag nor a digest, on any
// container, init container or ephemeral container. On UPDATE only the
// images the update brings are judged, so relabelling an old Pod passes.
//
// Build with `berth plugin build .`, test with `berth test .`.
package main

import (
	"fmt"
	"strings"
)

// SamplePolicySettings is the policy's `settings` in berth.yaml:
// {"label": {"key": "example.com/checked", "value": "true"}}. Every field
// is required; any other field is an error that names it.
type SamplePolicySettings struct {
	Label Label `json:"label"`
}

type Label struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

func (s *SamplePolicySettings) Validate() error {
	if err := CheckLabelKey(s.Label.Key); err != nil {
		return &SettingsError{Field: "label.key", Message: err.Error()}
	}
	if err := CheckLabelValue(s.Label.Value); err != nil {
		return &SettingsError{Field: "label.value", Message: err.Error()}
	}
	return nil
}

// The parts of an object this policy reads; the rest is skipped.
type object struct {
	Metadata struct {
		// nil when missing or null.
		Labels *map[string]string `json:"labels"`
	} `json:"metadata"`
	Spec podSpec `json:"spec"`
}

type podSpec struct {
	InitContainers      []container `json:"initContainers"`
	Containers          []container `json:"containers"`
	EphemeralContainers []container `json:"ephemeralContainers"`
}

type container struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

// evaluate is the verdict on one admission request.
func evaluate(request *Request, settings *SamplePolicySettings) (Verdict, error) {
	if !request.HasObject() {
		return VerdictAllow(), nil // DELETE: nothing to label or judge.
	}
	var obj object
	if err := request.Object(&obj); err != nil {
		return Verdict{}, err
	}

	if request.Kind.Kind == "Pod" {
		problems, err := imageProblems(request, obj.Spec)
		if err != nil {
			return Verdict{}, err
		}
		if len(problems) > 0 {
			return VerdictDeny(strings.Join(problems, "; ")), nil
		}
	}

	key, value := settings.Label.Key, settings.Label.Value
	if obj.Metadata.Labels == nil {
		return VerdictMutate(NewPatch().Add("/metadata/labels", map[string]string{key: value})), nil
	}
	path := Pointer("metadata", "labels", key)
	old, present := (*obj.Metadata.Labels)[key]
	switch {
	case !present:
		return VerdictMutate(NewPatch().Add(path, value)), nil
	case old == value:
		return VerdictAllow(), nil
	default:
		return VerdictMutate(NewPatch().Replace(path, value)).
			WithWarning(fmt.Sprintf("label %s was %s, now %s", quote(key), quote(old), quote(value))), nil
	}
}

// image is a container with an image, and how a message names it.
type image struct{ what, name, image string }

// images lists every container with an image, in the order they are judged.
func images(spec podSpec) []image {
	var found []image
	lists := []struct {
		what       string
		containers []container
	}{
		{"init container", spec.InitContainers},
		{"container", spec.Containers},
		{"ephemeral container", spec.EphemeralContainers},
	}
	for _, list := range lists {
		for _, c := range list.containers {
			if c.Image != "" {
				found = append(found, image{list.what, c.Name, c.Image})
			}
		}
	}
	return found
}

// imageProblems gives one message per floating image, in the order the Pod
// lists them. On UPDATE, an image the stored Pod already runs was admitted
// before and is not judged again.
func imageProblems(request *Request, spec podSpec) ([]string, error) {
	admitted := map[string]bool{}
	if request.Operation == "UPDATE" {
		var old object
		if err := request.OldObject(&old); err != nil {
			return nil, err
		}
		for _, c := range images(old.Spec) {
			admitted[c.image] = true
		}
	}
	var problems []string
	judged := 0
	for _, c := range images(spec) {
		if admitted[c.image] {
			continue
		}
		judged++
		if why := floats(c.image); why != "" {
			problems = append(problems, fmt.Sprintf("%s %s: image %s %s", c.what, quote(c.name), quote(c.image), why))
		}
	}
	LogDebug(fmt.Sprintf("judged %d images", judged))
	return problems, nil
}

// floats says why an image reference does not pin what runs, if it does
// not. A digest pins it whatever its tag; the tag is what follows `:` in
// the last path segment (a registry's port is in the first).
func floats(image string) string {
	if strings.Contains(image, "@") {
		return ""
	}
	last := image[strings.LastIndex(image, "/")+1:]
	_, tag, tagged := strings.Cut(last, ":")
	switch {
	case !tagged:
		return "has neither tag nor digest"
	case tag == "latest":
		return "is tagged :latest"
	}
	return ""
}

// quote puts a string in double quotes, as the messages show names and images.
func quote(text string) string {
	quoted, _ := marshal(text)
	return string(quoted)
}

// The component's exports, WIT `validate-settings` and `evaluate`, from the
// settings type and the function above (Rust: `export_plugin!`).
func init() { ExportPlugin(evaluate) }
