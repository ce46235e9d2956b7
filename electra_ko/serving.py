"""Tokenisation inside the TensorFlow graph, so a SavedModel can take raw Korean text.

`InGraphTokenizer` must give exactly the ids of `electra_ko.vocab`'s training tokenizer
(Hugging Face `tokenizers`: BertNormalizer with clean_text + handle_chinese_chars,
BertPreTokenizer, WordPiece with `##` and MAX_CHARS_PER_WORD). tensorflow-text's
`BertTokenizer` differs from it in small ways (it turns control characters into spaces
where the training tokenizer deletes them, counts the word-length limit in bytes, uses
older CJK ranges), so the normalisation and splitting are spelled out here with regex ops
that mirror the training pipeline, and only the WordPiece step is tensorflow-text's.
"""
import tensorflow as tf
import tensorflow_text as tf_text

from electra_ko import vocab as vocab_lib

# Characters the training normaliser deletes: control, format and private-use characters
# (tab, newline and carriage return excepted: they are whitespace), NUL and U+FFFD.
_DELETED_CHARS = r"[\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F\p{Cf}\p{Co}\x{FFFD}]"
_WHITESPACE = r"[\t\n\r\p{Z}]"
# The CJK ideograph blocks the training normaliser surrounds with spaces.
_CJK_RANGES = ((0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F),
               (0x2B740, 0x2B81F), (0x2B920, 0x2CEAF), (0xF900, 0xFAFF), (0x2F800, 0x2FA1F))
_CJK_CHAR = "[" + "".join(f"\\x{{{lo:X}}}-\\x{{{hi:X}}}" for lo, hi in _CJK_RANGES) + "]"
# Unicode punctuation plus every ASCII symbol (BERT splits `$`, `+`, `~` ... as well).
_PUNCTUATION = r"[\p{P}!-/:-@\[-`{-~]"
_BYTES_PER_CHAR = 4


class InGraphTokenizer(tf.Module):
    """Raw strings -> `input_ids` / `input_mask` / `segment_ids` padded to max_seq_length."""

    def __init__(self, vocab_path, max_seq_length, name=None):
        super().__init__(name=name)
        tokenizer = vocab_lib.load_tokenizer(vocab_path)
        if tokenizer.kind != vocab_lib.WORDPIECE:
            raise ValueError(f"{vocab_path}: in-graph tokenisation supports WordPiece vocabs, "
                             f"not {tokenizer.kind!r}")
        if max_seq_length < 3:
            raise ValueError(f"max_seq_length must be at least 3 ([CLS] x [SEP]), "
                             f"got {max_seq_length}")
        self.max_seq_length = max_seq_length
        self.do_lower_case = tokenizer.do_lower_case
        self.special_ids = dict(tokenizer.special_ids)
        self._unk_token = tokenizer.tokens[tokenizer.special_ids["unk"]]
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(tokenizer.tokens),
                tf.range(tokenizer.vocab_size, dtype=tf.int64)),
            default_value=-1)
        self._wordpiece = tf_text.WordpieceTokenizer(
            self._table, suffix_indicator=vocab_lib.CONTINUING_PREFIX,
            max_bytes_per_word=_BYTES_PER_CHAR * vocab_lib.MAX_CHARS_PER_WORD,
            token_out_type=tf.int64, unknown_token=self._unk_token)

    def normalize(self, texts):
        """The training normaliser: clean text, space out CJK ideographs, optional lower-casing."""
        texts = tf.strings.regex_replace(texts, _DELETED_CHARS, "")
        texts = tf.strings.regex_replace(texts, _WHITESPACE, " ")
        texts = tf.strings.regex_replace(texts, f"({_CJK_CHAR})", r" \1 ")
        if self.do_lower_case:
            texts = tf_text.normalize_utf8(texts, "NFD")
            texts = tf.strings.regex_replace(texts, r"\p{Mn}", "")
            texts = tf.strings.lower(texts, encoding="utf-8")
        return texts

    def split_words(self, texts):
        """Whitespace-separated words with each punctuation character a word of its own."""
        return tf_text.regex_split(self.normalize(texts), delim_regex_pattern=f" |{_PUNCTUATION}",
                                   keep_delim_regex_pattern=_PUNCTUATION)

    def tokenize(self, texts):
        """Ragged [batch, tokens] int64 WordPiece ids, no special tokens."""
        words = self.split_words(texts)
        too_long = (tf.strings.length(words.flat_values, unit="UTF8_CHAR")
                    > vocab_lib.MAX_CHARS_PER_WORD)
        words = words.with_flat_values(
            tf.where(too_long, self._unk_token, words.flat_values))
        return self._wordpiece.tokenize(words).merge_dims(1, 2)

    def __call__(self, texts, texts_b=None):
        """Model inputs for single texts, or sentence pairs truncated longest-first."""
        segments = [self.tokenize(texts)]
        if texts_b is not None:
            segments.append(self.tokenize(texts_b))
        budget = self.max_seq_length - 1 - len(segments)
        segments = tf_text.RoundRobinTrimmer(budget).trim(segments)
        ids, segment_ids = tf_text.combine_segments(
            segments, start_of_sequence_id=self.special_ids["cls"],
            end_of_segment_id=self.special_ids["sep"])
        input_ids, input_mask = tf_text.pad_model_inputs(
            ids, self.max_seq_length, pad_value=self.special_ids["pad"])
        segment_ids, _ = tf_text.pad_model_inputs(segment_ids, self.max_seq_length)
        return {"input_ids": tf.cast(input_ids, tf.int32),
                "input_mask": tf.cast(input_mask, tf.int32),
                "segment_ids": tf.cast(segment_ids, tf.int32)}


class ServingModule(tf.Module):
    """A SavedModel's serving functions: raw strings in, predictions out.

    `serve(text)` takes single texts, `serve_pairs(text_a, text_b)` sentence pairs. A
    classifier returns `probabilities` [B, C], `label_names` [B, C] and `predicted_label`
    [B] (a regression model its `score` [B]); a discriminator returns per-token
    `replaced_probability` [B, L] (0 on padding) with the `input_ids` it scored.
    """

    def __init__(self, tokenizer, model, kind, labels=None):
        super().__init__(name="electra_ko_serving")
        if kind not in ("discriminator", "classifier"):
            raise ValueError(f"a {kind} has no serving signature: export the discriminator "
                             f"or a fine-tuned classifier")
        self.tokenizer = tokenizer
        # Track the weights, not the Keras model: saving a Keras 3 model as a child object
        # makes TensorFlow trace its call with float placeholders for the int inputs.
        self.model_weights = list(model.weights)
        object.__setattr__(self, "_model", model)
        self.kind = kind
        self.label_names = tf.constant(list(labels)) if labels else None
        text = tf.TensorSpec([None], tf.string)
        self.serve = tf.function(self._serve, input_signature=[text])
        self.serve_pairs = tf.function(self._serve_pairs, input_signature=[text, text])

    def _serve(self, text):
        return self.predict(self.tokenizer(text))

    def _serve_pairs(self, text_a, text_b):
        return self.predict(self.tokenizer(text_a, text_b))

    def predict(self, features):
        length = self.tokenizer.max_seq_length
        features = {k: tf.ensure_shape(v, [None, length]) for k, v in features.items()}
        logits = self._model(features)
        if self.kind == "discriminator":
            mask = tf.cast(features["input_mask"], tf.float32)
            return {"replaced_probability": tf.sigmoid(logits) * mask,
                    "input_ids": features["input_ids"], "input_mask": features["input_mask"]}
        if self.label_names is None:
            return {"score": logits[:, 0]}
        batch = tf.shape(logits)[0]
        return {"probabilities": tf.nn.softmax(logits, axis=-1),
                "label_names": tf.tile(self.label_names[tf.newaxis], [batch, 1]),
                "predicted_label": tf.gather(self.label_names, tf.argmax(logits, axis=-1))}

    def signatures(self):
        return {"serving_default": self.serve.get_concrete_function(),
                "serve_pairs": self.serve_pairs.get_concrete_function()}
