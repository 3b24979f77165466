"""check_expected.py - cross-checks expected_ids.json against OpenAI's own GPT-2
encoder (src/encoder.py of github.com/openai/gpt-2, which needs the `regex`
module) and writes expected_ids_whitespace.json: ids for texts on which the
JavaScript encoder behind expected_ids.json cannot be trusted, because
JavaScript's \\s differs from the Unicode White_Space set that OpenAI's
encoder (Python `regex`) and Hugging Face's (Oniguruma) use: U+0085 is
whitespace there and U+FEFF is not. encoder.py is not part of this repository:

    python3 check_expected.py <directory holding OpenAI's encoder.py>

Exits non-zero if OpenAI's encoder disagrees with expected_ids.json on any
text other than those holding "<|endoftext|>" (which OpenAI's encoder.py, like
Hugging Face, maps to the special id 50256, while the JavaScript port and
llmblocks' encode() treat it as plain text).
"""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

WHITESPACE_TEXTS = [
    "a\u0085b", "\u0085\u0085x", "x \u0085y", "a\u0085 b", "\u0085",
    "\ufeffHello", "a\ufeffb", " \ufeffx", "\ufeff\ufeff", "x\ufeff \ufeff",
    "a\u001cb", "\u001c\u001d\u001e\u001fz", " \u001f", "a\u180eb", "a\u200b b",
    "mixed\u0085\u00a0\u2028\ufeff end",
]


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: python3 check_expected.py <directory holding OpenAI's encoder.py>")
    sys.path.insert(0, sys.argv[1])
    import encoder as openai_encoder  # noqa: E402

    with open(os.path.join(HERE, "vocab.json"), encoding="utf-8") as f:
        vocab = json.load(f)
    with open(os.path.join(HERE, "merges.txt"), encoding="utf-8") as f:
        merges = [tuple(line.split()) for line in f.read().split("\n")[1:-1]]
    enc = openai_encoder.Encoder(encoder=vocab, bpe_merges=merges)

    with open(os.path.join(HERE, "expected_ids.json"), encoding="utf-8") as f:
        cases = json.load(f)["cases"]
    agree, special, bad = 0, 0, []
    for case in cases:
        ids = enc.encode(case["text"])
        if ids == case["ids"]:
            agree += 1
        elif "<|endoftext|>" in case["text"]:
            special += 1
        else:
            bad.append(case["text"])
    print(f"expected_ids.json: {agree} of {len(cases)} agree with OpenAI's encoder.py; "
          f"{special} differ only by the <|endoftext|> special token; {len(bad)} other differences",
          file=sys.stderr)
    for text in bad:
        print("  differs:", json.dumps(text), file=sys.stderr)

    out = []
    for text in WHITESPACE_TEXTS:
        ids = enc.encode(text)
        out.append({"text": text, "ids": ids})
    with open(os.path.join(HERE, "expected_ids_whitespace.json"), "w", encoding="utf-8") as f:
        f.write('{\n  "source": "OpenAI gpt-2 src/encoder.py (Python regex module); see PROVENANCE.md",\n  "cases": [\n')
        f.write(",\n".join("    " + json.dumps(c, ensure_ascii=False, separators=(",", ":")) for c in out))
        f.write("\n  ]\n}\n")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
