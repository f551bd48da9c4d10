"""Seeded synthetic unified diffs for the benchmarks: ordinary Python, Java, JavaScript, TypeScript and Go
code with a sprinkling of lines that the secure-coding rules flag.

The same seed always gives the same diff. About half of the files are new (one hunk of added lines), the
others are modifications: added blocks between unchanged context, some with a few removed lines, in
several hunks with three lines of context, the way ``git diff`` writes them.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["LANGUAGES", "SyntheticDiff", "generate_diff"]

LANGUAGES = ("python", "java", "javascript", "typescript", "go")
_SUFFIX = {"python": ".py", "java": ".java", "javascript": ".js", "typescript": ".ts", "go": ".go"}
_DIRS = ("api", "billing", "core", "orders", "reports", "accounts", "sync", "storage", "web", "jobs")

_NOUNS = ("user", "order", "invoice", "account", "session", "report", "item", "cart", "payment", "customer",
          "record", "event", "message", "queue", "cache", "entry", "batch", "job", "status", "limit", "offset",
          "region", "tenant", "product", "price", "address", "shipment", "ticket", "profile", "schedule")
_VERBS = ("load", "save", "find", "update", "remove", "build", "parse", "render", "compute", "validate",
          "fetch", "send", "handle", "process", "merge", "sync", "apply", "check", "format", "resolve")
_WORDS = ("the", "cached", "current", "pending", "next", "remote", "local", "first", "last", "active",
          "stale", "retry", "page", "window", "value", "count", "total", "result", "request", "response")


@dataclass
class _Op:
    kind: str  # " " context, "+" added, "-" removed
    text: str


@dataclass
class SyntheticDiff:
    text: str
    files: int
    added_lines: int
    removed_lines: int
    trigger_lines: int
    by_language: dict[str, int] = field(default_factory=dict)  # added lines per language


class _Gen:
    """Per-language code generator: ``unit()`` gives one function/method (a list of lines)."""

    def __init__(self, rng: random.Random, trigger_rate: float) -> None:
        self.rng = rng
        self.trigger_rate = trigger_rate
        self.trigger_texts: set[str] = set()  # first lines of the trigger statements generated

    # --- vocabulary -------------------------------------------------------------------------------

    def noun(self) -> str:
        return self.rng.choice(_NOUNS)

    def verb(self) -> str:
        return self.rng.choice(_VERBS)

    def snake(self) -> str:
        return f"{self.verb()}_{self.noun()}"

    def camel(self) -> str:
        return self.verb() + self.noun().capitalize()

    def exported(self) -> str:
        """A Go exported name: camel case with a capital first letter."""
        name = self.camel()
        return name[0].upper() + name[1:]

    def pascal(self) -> str:
        return self.noun().capitalize() + self.rng.choice(("Service", "Store", "Handler", "Client", "Repo"))

    def sentence(self) -> str:
        words = [self.rng.choice(_WORDS) for _ in range(self.rng.randint(3, 8))]
        return " ".join([self.verb().capitalize(), *words, self.noun()])

    def secret(self, length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
        return "".join(self.rng.choice(alphabet) for _ in range(length))

    def trigger_now(self) -> bool:
        return self.rng.random() < self.trigger_rate

    def trigger(self, v: str) -> list[str]:
        raise NotImplementedError

    def planted(self, v: str) -> list[str]:
        lines = self.trigger(v)
        self.trigger_texts.add(lines[0].strip())
        return lines

    def secret_line(self) -> str:
        """A language-neutral hard-coded credential (pattern rules with validators)."""
        return self.rng.choice((
            lambda: f'"{self.secret(24)}"',
            lambda: f'"AKIA{self.secret(16, string.ascii_uppercase + "234567")}"',
            lambda: f'"sk_live_{self.secret(28)}"',
            lambda: f'"ghp_{self.secret(36)}"',
            lambda: f'"postgresql://app:{self.secret(16)}@db.internal:5432/{self.noun()}s"',
        ))()


class _Python(_Gen):
    def header(self) -> list[str]:
        mods = {"json", "logging", *self.rng.sample(["os", "datetime", "pathlib", "typing", "hashlib", "re"], 2)}
        return [f"import {m}" for m in sorted(mods)] + ["", "logger = logging.getLogger(__name__)", "", ""]

    def trigger(self, v: str) -> list[str]:
        return self.rng.choice((
            # The generated lines are code under review, not queries this program runs (hence noqa: S608).
            lambda: [f"cur.execute(f\"SELECT * FROM {self.noun()}s WHERE name = '{{{v}}}'\")"],  # noqa: S608
            lambda: [f'os.system("ping -c 1 " + {v})'],
            lambda: [f"{v} = pickle.loads(base64.b64decode({v}))"],
            lambda: [f"{v} = yaml.load(stream)"],
            lambda: ["pw_hash = hashlib.md5(password.encode()).hexdigest()"],
            lambda: [f"resp = requests.get({v}, verify=False, timeout=10)"],
            lambda: ["ctx = ssl._create_unverified_context()"],
            lambda: ["reset_token = str(random.randint(100000, 999999))"],
            lambda: [f"API_KEY = {self.secret_line()}"],
        ))()

    def statement(self, v: str) -> list[str]:
        if self.trigger_now():
            return self.planted(v)
        n, a = self.noun(), self.noun()
        return self.rng.choice((
            lambda: [f"{n} = {v}.{a}"],
            lambda: [f"{n} = {self.snake()}({v}, limit={self.rng.randint(1, 500)})"],
            lambda: [f"if {n} is None:", f"    {n} = {{}}"],
            lambda: [f"for {a} in {v}.{n}s:", f"    result.append({a}.{self.noun()})"],
            lambda: [f'logger.info("{self.sentence()}: %s", {v})'],
            lambda: [f"# {self.sentence()}."],
            lambda: [f'{n} = {{"{a}": {v}, "{self.noun()}": {self.rng.randint(0, 99)}}}'],
            lambda: [f"total += {v}.{a} * {self.rng.randint(2, 12)}"],
            lambda: [f'with open(path / "{n}.json", encoding="utf-8") as fh:', f"    {n} = json.load(fh)"],
            lambda: [f"if not {v}:", f'    raise ValueError("{self.sentence()}")'],
        ))()

    def unit(self) -> list[str]:
        v = self.noun()
        lines = [f"def {self.snake()}({v}, {self.noun()}_id=None):", f'    """{self.sentence()}."""',
                 "    result = []", "    total = 0"]
        for _ in range(self.rng.randint(3, 9)):
            lines.extend("    " + s for s in self.statement(v))
        lines += ["    return result", "", ""]
        return lines

    def filler(self) -> str:
        return f"{self.noun().upper()}_{self.noun().upper()}_LIMIT = {self.rng.randint(1, 10000)}"


class _Java(_Gen):
    def header(self) -> list[str]:
        return [f"package com.example.{self.rng.choice(_DIRS)};", "", "import java.util.ArrayList;",
                "import java.util.HashMap;", "import java.util.List;", "import java.util.Map;", "",
                f"public class {self.pascal()} {{", ""]

    def trigger(self, v: str) -> list[str]:
        return self.rng.choice((
            lambda: [f'Process p = Runtime.getRuntime().exec("ping -c 1 " + {v});'],
            lambda: [f"ResultSet rs = stmt.executeQuery(\"SELECT * FROM {self.noun()}s WHERE name = '\" + "  # noqa: S608
                     f"{v} + \"'\");"],
            lambda: ['MessageDigest md = MessageDigest.getInstance("MD5");'],
            lambda: ['Cipher cipher = Cipher.getInstance("DESede/CBC/PKCS5Padding");'],
            lambda: ["ObjectInputStream ois = new ObjectInputStream(in);", "Object restored = ois.readObject();"],
            lambda: ["HttpsURLConnection.setDefaultHostnameVerifier((hostname, session) -> true);"],
            lambda: ["String resetToken = Long.toHexString(new Random().nextLong());"],
            lambda: [f"String dbPassword = {self.secret_line()};"],
        ))()

    def statement(self, v: str) -> list[str]:
        if self.trigger_now():
            return self.planted(v)
        n, a = self.noun(), self.noun()
        return self.rng.choice((
            lambda: [f"String {n}Name = {v}.get{a.capitalize()}();"],
            lambda: [f"int {n}Count = {v}.size() + {self.rng.randint(1, 50)};"],
            lambda: [f"if ({v} == null) {{", f'    throw new IllegalArgumentException("{self.sentence()}");', "}"],
            lambda: [f"for (Object {a} : {v}.get{n.capitalize()}s()) {{", f"    result.add({a});", "}"],
            lambda: [f'log.info("{self.sentence()}: {{}}", {v});'],
            lambda: [f"// {self.sentence()}."],
            lambda: [f"Map<String, Object> {n}Map = new HashMap<>();", f'{n}Map.put("{a}", {v});'],
            lambda: [f"total += {v}.get{a.capitalize()}() * {self.rng.randint(2, 12)};"],
        ))()

    def unit(self) -> list[str]:
        v = self.noun()
        lines = ["    /**", f"     * {self.sentence()}.", "     */",
                 f"    public List<Object> {self.camel()}({v.capitalize()} {v}, long {self.noun()}Id) {{",
                 "        List<Object> result = new ArrayList<>();", "        long total = 0;"]
        for _ in range(self.rng.randint(3, 8)):
            lines.extend("        " + s for s in self.statement(v))
        lines += ["        return result;", "    }", ""]
        return lines

    def filler(self) -> str:
        return f"    private static final int {self.noun().upper()}_LIMIT = {self.rng.randint(1, 10000)};"

    def footer(self) -> list[str]:
        return ["}"]


class _JavaScript(_Gen):
    typed = False

    def header(self) -> list[str]:
        return [f'const {{ {self.camel()} }} = require("./{self.noun()}");', 'const log = require("./log");', ""]

    def ty(self, name: str) -> str:
        return f": {name}" if self.typed else ""

    def trigger(self, v: str) -> list[str]:
        return self.rng.choice((
            lambda: [f"exec(`convert ${{{v}.file}} -resize 64x64 thumb.png`, (err) => done(err));"],
            lambda: [f"const value = eval({v}.query.expr);"],
            lambda: [f"const {{ rows }} = await pool.query(`SELECT * FROM {self.noun()}s WHERE name = "  # noqa: S608
                     f"'${{{v}.query.name}}'`);"],
            lambda: ["const agent = new https.Agent({ rejectUnauthorized: false });"],
            lambda: ["const resetToken = Math.random().toString(36).slice(2);"],
            lambda: ['const pwHash = crypto.createHash("md5").update(password).digest("hex");'],
            lambda: [f"const apiKey = {self.secret_line()};"],
        ))()

    def statement(self, v: str) -> list[str]:
        if self.trigger_now():
            return self.planted(v)
        n, a = self.noun(), self.noun()
        return self.rng.choice((
            lambda: [f"const {n}{self.ty('string')} = {v}.{a};"],
            lambda: [f"const {n}List = await {self.camel()}({v}, {{ limit: {self.rng.randint(1, 500)} }});"],
            lambda: [f"if (!{v}.{n}) {{", f'  throw new Error("{self.sentence()}");', "}"],
            lambda: [f"for (const {a} of {v}.{n}s) {{", f"  result.push({a}.{self.noun()});", "}"],
            lambda: [f"log.info(`{self.sentence()}: ${{{v}.id}}`);"],
            lambda: [f"// {self.sentence()}."],
            lambda: [f"total += {v}.{a} * {self.rng.randint(2, 12)};"],
            lambda: [f"const {n}Map = {{ {a}: {v}.{a}, count: {self.rng.randint(0, 99)} }};"],
        ))()

    def unit(self) -> list[str]:
        v = self.noun()
        if self.typed:
            head = f"export async function {self.camel()}({v}: {v.capitalize()}, id?: number): Promise<unknown[]> {{"
        else:
            head = f"async function {self.camel()}({v}, id) {{"
        lines = ["/**", f" * {self.sentence()}.", " */", head,
                 f"  const result{self.ty('unknown[]')} = [];", "  let total = 0;"]
        for _ in range(self.rng.randint(3, 8)):
            lines.extend("  " + s for s in self.statement(v))
        lines += ["  return result;", "}", ""]
        return lines

    def filler(self) -> str:
        return f"const {self.noun().upper()}_LIMIT = {self.rng.randint(1, 10000)};"


class _TypeScript(_JavaScript):
    typed = True

    def header(self) -> list[str]:
        n = self.noun().capitalize()
        return [f'import {{ {self.camel()} }} from "./{self.noun()}";', 'import { log } from "./log";', "",
                f"export interface {n} {{", "  id: number;", "  name: string;", "}", ""]


class _Go(_Gen):
    def header(self) -> list[str]:
        return [f"package {self.rng.choice(_DIRS)}", "", "import (", '\t"context"', '\t"fmt"', '\t"log"', ")", ""]

    def trigger(self, v: str) -> list[str]:
        return self.rng.choice((
            lambda: [f"rows, err := s.db.Query(fmt.Sprintf(\"SELECT * FROM {self.noun()}s WHERE name = '%s'\", "  # noqa: S608
                     f"{v}))"],
            lambda: [f'out, err := exec.Command("sh", "-c", "tar czf out.tgz "+{v}).Output()'],
            lambda: ["tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}"],
            lambda: ["pwHash := md5.Sum([]byte(password))"],
            lambda: [f"apiKey := {self.secret_line()}"],
        ))()

    def statement(self, v: str) -> list[str]:
        if self.trigger_now():
            return self.planted(v)
        n, a = self.noun(), self.noun()
        return self.rng.choice((
            lambda: [f"{n}, err := s.repo.{self.exported()}(ctx, {v})", "if err != nil {",
                     f'\treturn nil, fmt.Errorf("{self.verb()} {n}: %w", err)', "}", f"_ = {n}"],
            lambda: [f"for _, {a} := range {v}.{n.capitalize()}s {{", f"\tresult = append(result, {a})", "}"],
            lambda: [f'log.Printf("{self.sentence()}: %v", {v})'],
            lambda: [f"// {self.sentence()}."],
            lambda: [f"total += len({v}.{a.capitalize()}) * {self.rng.randint(2, 12)}"],
            lambda: [f"if {v} == nil {{", f'\treturn nil, fmt.Errorf("{self.sentence()}")', "}"],
        ))()

    def unit(self) -> list[str]:
        v, name = self.noun(), self.exported()
        lines = [f"// {name} {self.sentence().lower()}.",
                 f"func (s *{self.pascal()}) {name}(ctx context.Context, {v} *{v.capitalize()}) "
                 "([]any, error) {", "\tvar result []any", "\ttotal := 0"]
        for _ in range(self.rng.randint(3, 8)):
            lines.extend("\t" + s for s in self.statement(v))
        lines += ["\t_ = total", "\treturn result, nil", "}", ""]
        return lines

    def filler(self) -> str:
        return f"const {self.noun().capitalize()}Limit = {self.rng.randint(1, 10000)}"


_GENERATORS: dict[str, Callable[[random.Random, float], _Gen]] = {
    "python": _Python, "java": _Java, "javascript": _JavaScript, "typescript": _TypeScript, "go": _Go}


def _file_ops(gen: _Gen, added_budget: int, new_file: bool) -> list[_Op]:
    """The lines of one file as context / added / removed operations, with exactly ``added_budget`` added."""
    rng = gen.rng
    ops: list[_Op] = []
    header = gen.header()
    footer = getattr(gen, "footer", list)()
    added = 0
    if new_file:
        ops.extend(_Op("+", line) for line in header)
        added += len(header) + len(footer)
    else:
        ops.extend(_Op(" ", line) for line in header)
    while added < added_budget:
        unit = gen.unit()
        if new_file or rng.random() < 0.55:
            room = added_budget - added
            if len(unit) > room:
                unit = [gen.filler() for _ in range(room)]
            if not new_file and rng.random() < 0.3:
                # A replaced block: some old lines go, the new ones come.
                ops.extend(_Op("-", line) for line in gen.unit()[: rng.randint(1, 6)])
            ops.extend(_Op("+", line) for line in unit)
            added += len(unit)
        else:
            ops.extend(_Op(" ", line) for line in unit)
    ops.extend(_Op("+" if new_file else " ", line) for line in footer)
    return ops


def _hunks(ops: list[_Op], context: int = 3) -> list[str]:
    """Unified-diff hunks (header and body lines) for ``ops``."""
    changed = [i for i, op in enumerate(ops) if op.kind != " "]
    if not changed:
        return []
    # Old and new line numbers before each op (1-based numbers of the op's line on each side).
    old_no, new_no = [], []
    o = n = 1
    for op in ops:
        old_no.append(o)
        new_no.append(n)
        if op.kind != "+":
            o += 1
        if op.kind != "-":
            n += 1
    groups: list[list[int]] = [[changed[0], changed[0]]]
    for i in changed[1:]:
        if i - groups[-1][1] <= 2 * context + 1:
            groups[-1][1] = i
        else:
            groups.append([i, i])
    out: list[str] = []
    for first, last in groups:
        start, end = max(0, first - context), min(len(ops) - 1, last + context)
        body = ops[start:end + 1]
        old_len = sum(1 for op in body if op.kind != "+")
        new_len = sum(1 for op in body if op.kind != "-")
        old_start = old_no[start] if old_len else old_no[start] - 1
        new_start = new_no[start] if new_len else new_no[start] - 1
        out.append(f"@@ -{old_start},{old_len} +{new_start},{new_len} @@")
        out.extend(op.kind + op.text for op in body)
    return out


def generate_diff(*, seed: int, added_lines: int, files: int, trigger_rate: float = 0.012,
                  languages: tuple[str, ...] = LANGUAGES) -> SyntheticDiff:
    """A diff adding exactly ``added_lines`` lines over ``files`` files, cycling through ``languages``."""
    rng = random.Random(seed)
    weights = [rng.uniform(0.5, 1.5) for _ in range(files)]
    budgets = [max(20, int(added_lines * w / sum(weights))) for w in weights]
    budgets[-1] += added_lines - sum(budgets)
    if budgets[-1] < 20:
        raise ValueError("too many files for that many lines")
    text: list[str] = []
    total_added = total_removed = triggers = 0
    by_language: dict[str, int] = {}
    seen_paths: set[str] = set()
    for index, budget in enumerate(budgets):
        language = languages[index % len(languages)]
        gen = _GENERATORS[language](rng, trigger_rate)
        path = ""
        while not path or path in seen_paths:
            stem = (f"{rng.choice(_NOUNS).capitalize()}{rng.choice(('Service', 'Store', 'Handler', 'Client'))}"
                    if language == "java" else f"{rng.choice(_VERBS)}_{rng.choice(_NOUNS)}")
            path = f"src/{rng.choice(_DIRS)}/{stem}{_SUFFIX[language]}"
        seen_paths.add(path)
        new_file = rng.random() < 0.5
        ops = _file_ops(gen, budget, new_file)
        if new_file:
            text += [f"diff --git a/{path} b/{path}", "new file mode 100644",
                     f"index 0000000..{rng.getrandbits(28):07x}", "--- /dev/null", f"+++ b/{path}",
                     f"@@ -0,0 +1,{len(ops)} @@"]
            text += ["+" + op.text for op in ops]
        else:
            text += [f"diff --git a/{path} b/{path}", f"index {rng.getrandbits(28):07x}..{rng.getrandbits(28):07x} "
                     "100644", f"--- a/{path}", f"+++ b/{path}"]
            text += _hunks(ops)
        added = sum(1 for op in ops if op.kind == "+")
        total_added += added
        total_removed += sum(1 for op in ops if op.kind == "-")
        triggers += sum(1 for op in ops if op.kind == "+" and op.text.strip() in gen.trigger_texts)
        by_language[language] = by_language.get(language, 0) + added
    return SyntheticDiff(text="\n".join(text) + "\n", files=len(budgets), added_lines=total_added,
                         removed_lines=total_removed, trigger_lines=triggers, by_language=by_language)
