"""The SDK's own tests, natively: ``python3 -m unittest`` in plugins/sdk-python.
berth's Rust suite runs them (tests/suites/authors.rs); ``berth plugin new``
leaves this file out of projects."""

import contextlib
import io
import traceback
import unittest
from dataclasses import dataclass
from typing import Optional

import berth_sdk
from berth_sdk import (
    Allow,
    Deny,
    Mutate,
    Patch,
    PolicyError,
    Request,
    Settings,
    SettingsError,
    Verdict,
    check_dns_subdomain,
    check_label_key,
    check_label_value,
    export_plugin,
    log,
    pointer,
)


@dataclass
class Label:
    key: str
    value: str


@dataclass
class TestSettings(Settings):
    label: Label
    count: Optional[int] = None

    def validate(self):
        problem = check_label_key(self.label.key)
        if problem is not None:
            raise SettingsError("label.key", problem)


class PatchTest(unittest.TestCase):
    def test_pointer_escapes_tilde_before_slash(self):
        self.assertEqual(
            pointer(["metadata", "labels", "example.com/checked", "a~b"]),
            "/metadata/labels/example.com~1checked/a~0b",
        )
        self.assertEqual(pointer(["~1"]), "/~01")
        self.assertEqual(pointer([]), "")

    def test_a_patch_is_rfc6902_json_op_by_op(self):
        patch = Patch().add("/a", {"k": "<é>"}).replace("/b", None).remove("/c").test("/d", 1)
        self.assertEqual(
            patch.to_json(),
            '[{"op":"add","path":"/a","value":{"k":"<é>"}},{"op":"replace","path":"/b","value":null},'
            '{"op":"remove","path":"/c"},{"op":"test","path":"/d","value":1}]',
        )
        self.assertEqual(Patch().append("/l", 0, ["x", "y"]).to_json(), '[{"op":"add","path":"/l","value":["x","y"]}]')
        self.assertEqual(
            Patch().append("/l", 2, iter(["x", "y"])).to_json(),
            '[{"op":"add","path":"/l/-","value":"x"},{"op":"add","path":"/l/-","value":"y"}]',
        )
        self.assertTrue(Patch().append("/l", 0, []).is_empty())


class VerdictTest(unittest.TestCase):
    def test_verdict_shapes(self):
        self.assertEqual(Verdict.allow().decision, Allow())
        deny = Verdict.deny("no").with_warning("careful")
        self.assertEqual(deny.decision, Deny("no", 403))
        self.assertEqual(deny.warnings, ["careful"])
        self.assertFalse(deny.is_allowed())
        self.assertEqual(Verdict.deny_with_code("gone", 410).decision, Deny("gone", 410))
        self.assertEqual(Verdict.mutate(Patch()).decision, Allow(), "an empty patch is an allow")
        mutate = Verdict.mutate(Patch().add("/x", 1))
        self.assertIsInstance(mutate.decision, Mutate)
        self.assertEqual(mutate.patch().to_json(), '[{"op":"add","path":"/x","value":1}]')
        self.assertIsNone(Verdict.allow().patch())


class SettingsTest(unittest.TestCase):
    def error(self, text):
        with self.assertRaises(SettingsError) as caught:
            TestSettings.parse(text)
        return str(caught.exception)

    def test_settings_errors_name_the_field(self):
        self.assertEqual(
            self.error('{"label": {"key": "a", "value": "b", "extra": 1}}'),
            "settings.label.extra: unknown field `extra`, expected `key` or `value`",
        )
        self.assertEqual(self.error('{"label": {"key": "a"}}'), "settings.label: missing field `value`")
        self.assertEqual(self.error("{}"), "settings: missing field `label`")
        self.assertEqual(
            self.error('{"label": {"key": 1, "value": "b"}}'),
            "settings.label.key: invalid type: number 1, expected a string",
        )
        self.assertEqual(
            self.error('{"label": {"key": "a", "value": "b"}, "count": true}'),
            "settings.count: invalid type: boolean true, expected an integer",
        )
        self.assertEqual(
            self.error('{"label": {"key": "Ex.com/x", "value": "b"}}'),
            "settings.label.key: its prefix (before '/') must be a DNS subdomain",
        )
        self.assertTrue(self.error('{"label": ').startswith("settings: invalid JSON: "))
        good = TestSettings.parse('{"label": {"key": "example.com/checked", "value": "true"}, "count": 2}')
        self.assertEqual(good, TestSettings(Label("example.com/checked", "true"), 2))


class NamesTest(unittest.TestCase):
    """The cases of plugins/sdk/src/names.rs, and the messages word for word."""

    def test_dns_subdomains(self):
        for good in ["regsecret", "local-storage", "a.b-c.d", "0x"]:
            self.assertIsNone(check_dns_subdomain(good), good)
        for bad in ["", "Reg", "-a", "a-", "a..b", "a_b", "a" * 254]:
            self.assertIsInstance(check_dns_subdomain(bad), str, bad)
        self.assertEqual(check_dns_subdomain(""), "must have 1 to 253 characters")
        self.assertEqual(check_dns_subdomain("é" * 127), "must have 1 to 253 characters", "UTF-8 bytes, as Rust counts")
        self.assertEqual(
            check_dns_subdomain("a..b"), "each '.'-separated part must start and end with a lowercase letter or digit"
        )
        self.assertEqual(check_dns_subdomain("a_b"), "may have only lowercase letters, digits, '-' and '.'")

    def test_label_keys_and_values(self):
        for good in ["app", "example.com/checked", "a.b/C_d-1", "k" * 63]:
            self.assertIsNone(check_label_key(good), good)
        for bad in ["", "/x", "Ex.com/x", "a/", "-a", "a b", "k" * 64, "a/b/c", "a\n"]:
            self.assertIsInstance(check_label_key(bad), str, bad)
        for good in ["", "true", "v1.2_3-x"]:
            self.assertIsNone(check_label_value(good), good)
        for bad in ["-x", "x.", "a b", "v" * 64, "ä"]:
            self.assertIsInstance(check_label_value(bad), str, bad)
        self.assertEqual(check_label_key("Ex.com/x"), "its prefix (before '/') must be a DNS subdomain")
        self.assertEqual(check_label_key("a/"), "must have a name (after any prefix)")
        self.assertEqual(
            check_label_key("a b"),
            "its name must have 1 to 63 letters, digits, '-', '_' or '.', a letter or digit at each end",
        )
        self.assertEqual(
            check_label_value("x."),
            "must have at most 63 letters, digits, '-', '_' or '.', a letter or digit at each end",
        )


class RequestTest(unittest.TestCase):
    def test_objects_are_parsed_only_when_asked_once(self):
        request = Request('{"uid": "u", "kind": {"kind": "Pod"}, "operation": "CREATE"}', '{"metadata": ', None)
        self.assertTrue(request.has_object(), "a broken object is not read until asked for")
        self.assertEqual((request.uid, request.kind, request.namespace), ("u", {"group": "", "kind": "Pod"}, None))
        with self.assertRaises(PolicyError) as caught:
            request.object()
        self.assertTrue(str(caught.exception).startswith("object: "), caught.exception)
        with self.assertRaisesRegex(PolicyError, "^Create request has no oldObject$"):
            request.old_object()
        self.assertFalse(Request('{"operation": "DELETE"}', "null", "{}").has_object())

        good = Request('{"operation": "UPDATE"}', '{"metadata": {"name": "p"}}', '{"metadata": {}}')
        obj = good.object()
        self.assertEqual(obj["metadata"]["name"], "p")
        self.assertIs(good.object(), obj, "parsed once")
        self.assertEqual(good.old_object(), {"metadata": {}})

    def test_require_kind_says_what_the_plugin_applies_to(self):
        request = Request('{"kind": {"kind": "PersistentVolumeClaim"}}')
        with self.assertRaisesRegex(PolicyError, "^pod-policy applies to Pods, not PersistentVolumeClaim$"):
            request.require_kind("Pod", "pod-policy")
        with self.assertRaisesRegex(PolicyError, "applies to Ingresses,"):
            request.require_kind("Ingress", "p")
        with self.assertRaisesRegex(PolicyError, "applies to NetworkPolicies,"):
            request.require_kind("NetworkPolicy", "p")
        request.require_kind("PersistentVolumeClaim", "p")


class ExportPluginTest(unittest.TestCase):
    def test_errors_become_the_wit_err_and_bugs_are_logged(self):
        def evaluate(request, settings):
            log.debug(f"labelling {request.name}")
            if request.name == "fail":
                raise PolicyError("no cluster data")
            if request.name == "bug":
                raise KeyError("oops")
            path = pointer(["metadata", "labels", settings.label.key])
            return Verdict.mutate(Patch().add(path, settings.label.value))

        plugin = export_plugin(TestSettings, evaluate)()
        settings = '{"label": {"key": "example.com/checked", "value": "true"}}'
        with self.assertRaises(berth_sdk._Err) as caught:
            plugin.validate_settings('{"label": {"key": "-", "value": ""}}')
        self.assertEqual(
            caught.exception.value,
            "settings.label.key: its name must have 1 to 63 letters, digits, '-', '_' or '.', a letter or digit at each end",
        )
        plugin.validate_settings(settings)

        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
            verdict = plugin.evaluate('{"name": "p"}', "{}", None, settings, None)
            with self.assertRaises(berth_sdk._Err) as caught:
                plugin.evaluate('{"name": "fail"}', "{}", None, settings, None)
            self.assertEqual(caught.exception.value, "no cluster data")
            with self.assertRaises(KeyError):
                plugin.evaluate('{"name": "bug"}', "{}", None, settings, None)
        self.assertEqual(verdict.patch().to_json(), '[{"op":"add","path":"/metadata/labels/example.com~1checked","value":"true"}]')
        lines = stderr.getvalue().splitlines()
        self.assertEqual(lines[:3], ["[debug] labelling p", "[debug] labelling fail", "[debug] labelling bug"])
        # The bug's file and line first, then the whole traceback.
        line = next(n for n, text in enumerate(open(__file__), 1) if 'raise KeyError("oops")' in text)
        self.assertEqual(lines[3], f"[error] panic: KeyError: 'oops' ({__file__}, line {line}, in evaluate)")
        self.assertEqual(lines[4], "Traceback (most recent call last):")
        self.assertIn(f'File "{__file__}", line {line}, in evaluate', "\n".join(lines[5:]))
        self.assertEqual(lines[-1], "KeyError: 'oops'")

    def test_a_bug_names_the_project_s_files_as_the_author_does(self):
        # In the component, the project's files are at /0; the author's
        # policy.py is theirs, not /0's.
        def policy_code():
            raise ValueError("bad")

        try:
            policy_code()
        except ValueError as err:
            summary = traceback.TracebackException.from_exception(err)
            summary.stack[-1].filename = "/0/policy.py"
            berth_sdk._as_in_project(summary)
            self.assertEqual(summary.stack[-1].filename, "policy.py")
            self.assertEqual(summary.stack[0].filename, __file__, "a path that is not the project's stays")


if __name__ == "__main__":
    unittest.main()
