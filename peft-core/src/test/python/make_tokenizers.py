"""Builds the tiny test tokenizers used by peft4j's data tests and records the reference encodings.

Writes into ../resources/fixtures/tokenizers/ (or --out):
  bpe/        byte-level BPE, vocab 128, Llama-style <s> prefix, </s> eos, <pad>, ChatML markers
  wordpiece/  BERT-style WordPiece, vocab 128, lower-casing, [CLS] ... [SEP]
  expected.json  for each tokenizer and text: ids with and without special tokens, the decoded strings,
                 and for word lists (NER) the ids and word index of every token (HF's word_ids()).

Run:  /work/V/bin/python make_tokenizers.py   (deterministic: same files every run)
"""
import argparse
import json
import os

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from tokenizers import AddedToken

CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "hello world, this is a tiny corpus for a tiny tokenizer.",
    "instruction: write a short answer. response: yes, it is.",
    "john lives in london and works at acme corp in paris.",
    "mary met peter in berlin on monday!",
    "numbers 1 2 3 4 5 6 7 8 9 0 and symbols ? : ; ' \" ( ) - #",
    "ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz",
    "### Instruction:\nsay hi\n\n### Response:\nhi\tthere",
] * 20

TEXTS = [
    "hello world",
    "The quick brown fox.",
    "  two  spaces and a tab\tend",
    "instruction: say hi\nresponse: hi!",
    "John lives in London.",
    "zzzz qqq unusual",
]

WORDS = [
    ["John", "lives", "in", "London", "."],
    ["Mary", "met", "Peter", "in", "Berlin", "on", "Monday", "!"],
    ["quickest", "foxes"],
]


def bpe_tokenizer():
    specials = ["<s>", "</s>", "<pad>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=128, special_tokens=specials, show_progress=False)
    tok.train_from_iterator(CORPUS, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    assert tok.get_vocab_size() <= 128, tok.get_vocab_size()
    config = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "model_max_length": 64,
              "tokenizer_class": "PreTrainedTokenizerFast"}
    return tok, config, None


def wordpiece_tokenizer():
    # The vocabulary is built by hand, not by WordPieceTrainer, whose tie-breaking is not deterministic:
    # specials, every character of the normalised corpus, its letters and digits as "##" continuations,
    # then the most frequent words of at most 4 characters (ties broken alphabetically) up to 128 entries,
    # so that longer words split into several sub-tokens.
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    counts = {}
    for line in CORPUS:
        for word, _ in pre.pre_tokenize_str(normalizer.normalize_str(line)):
            counts[word] = counts.get(word, 0) + 1
    chars = sorted({c for w in counts for c in w})
    vocab_list = specials + chars + ["##" + c for c in chars if c.isalnum()]
    for word, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(vocab_list) >= 128:
            break
        if word not in vocab_list and len(word) <= 4:
            vocab_list.append(word)
    vocab = {t: i for i, t in enumerate(vocab_list)}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.add_special_tokens(specials)
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    assert tok.get_vocab_size() <= 128, tok.get_vocab_size()
    config = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]",
              "mask_token": "[MASK]", "do_lower_case": True, "model_max_length": 64,
              "tokenizer_class": "BertTokenizerFast"}
    # special_tokens_map.json as transformers writes it; no bos/eos: BERT has none
    special_map = {"cls_token": "[CLS]", "sep_token": "[SEP]", "pad_token": "[PAD]", "unk_token": "[UNK]",
                   "mask_token": "[MASK]"}
    return tok, config, special_map


def record(tok):
    out = {"texts": [], "words": []}
    for text in TEXTS:
        with_special = tok.encode(text, add_special_tokens=True).ids
        plain = tok.encode(text, add_special_tokens=False).ids
        out["texts"].append({
            "text": text,
            "ids": with_special,
            "ids_no_special": plain,
            "decoded_skip_special": tok.decode(with_special, skip_special_tokens=True),
            "decoded_keep_special": tok.decode(with_special, skip_special_tokens=False),
        })
    for words in WORDS:
        for special in (True, False):
            enc = tok.encode(words, is_pretokenized=True, add_special_tokens=special)
            out["words"].append({"words": words, "add_special": special, "ids": enc.ids,
                                 "word_ids": [-1 if w is None else w for w in enc.word_ids]})
    return out


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.path.join(here, "..", "resources", "fixtures", "tokenizers"))
    args = parser.parse_args()
    expected = {}
    for name, make in (("bpe", bpe_tokenizer), ("wordpiece", wordpiece_tokenizer)):
        tok, config, special_map = make()
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        tok.save(os.path.join(d, "tokenizer.json"), pretty=False)
        with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
            json.dump(config, f, indent=1, sort_keys=True)
        if special_map is not None:
            with open(os.path.join(d, "special_tokens_map.json"), "w") as f:
                json.dump(special_map, f, indent=1, sort_keys=True)
        expected[name] = record(tok)
        print(name, "vocab", tok.get_vocab_size())
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True, ensure_ascii=False)


if __name__ == "__main__":
    main()
