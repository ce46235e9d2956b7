"""One command from raw corpus to model: with `corpus` set, the driver builds the vocab and
the shards, pretrains and exports; re-runs skip the finished stages; a changed vocab is
refused; the same job runs with data_dir and model_dir on gs:// (emulator) through the CLI."""
import datetime
import http.client
import http.server
import json
import os
import pathlib
import shutil
import ssl
import subprocess
import sys
import threading
import uuid

import pytest

from electra_ko import build_data, config, pretrain, storage, vocab

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEBUG_CONFIG = os.path.join(REPO, "configs", "debug.json")

# Four short documents (blank line = document boundary), written for these tests.
DOCUMENTS = [
    ["봄이 오면 강가에 벚꽃이 핀다.", "아침마다 동생과 함께 공원을 걷는다.",
     "오늘 점심은 김치찌개와 계란말이였다.", "도서관에서 빌린 소설을 밤새 읽었다.",
     "버스가 늦게 와서 회의에 조금 늦었다."],
    ["주말에는 가족들과 바닷가에 가기로 했다.", "새로 산 운동화가 발에 꼭 맞는다.",
     "할머니 댁 마당에는 감나무가 서 있다.", "비가 그친 뒤 하늘에 무지개가 떴다.",
     "시험이 끝나면 친구들과 영화를 보러 갈 것이다."],
    ["이 식당의 냉면은 국물이 시원하다.", "겨울에는 따뜻한 유자차를 자주 마신다.",
     "지하철 안에서 책을 읽는 사람이 많다.", "고양이가 창가에 앉아 햇볕을 쬐고 있다.",
     "어제 본 연극은 배우들의 연기가 훌륭했다."],
    ["동네 빵집에서 갓 구운 식빵을 샀다.", "산 정상에 오르니 마을이 한눈에 보였다.",
     "회사 앞 카페는 늘 사람들로 붐빈다.", "아이들이 운동장에서 축구를 하고 있다.",
     "내일은 아침 일찍 기차를 타야 한다."],
]
# The debug config shrunk to the least that still runs every stage: 2 steps, 2 shards.
SMALL = {"max_seq_length": 32, "num_train_steps": 2, "iterations_per_loop": 2,
         "save_checkpoints_steps": 2, "num_shards": 2, "num_unused": 4, "min_frequency": 1}
EXPORTED = {"config.json", "model.safetensors", "vocab.txt"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A glob over two files, as a real corpus is usually split."""
    directory = tmp_path_factory.mktemp("corpus")
    for index, half in enumerate((DOCUMENTS[:2], DOCUMENTS[2:])):
        # x40: some hundred examples, so the 1000-example shuffle buffer fills in few gs:// reads
        text = "\n\n".join("\n".join(doc * 40) for doc in half)
        (directory / f"part-{index}.txt").write_text(text + "\n", encoding="utf-8")
    return str(directory / "part-*.txt")


def _cfg(corpus, data_dir, **values):
    """The debug config with only corpus + data_dir + model_dir set, as a user would."""
    return config.load_config(config.PRETRAIN, DEBUG_CONFIG, corpus=corpus, data_dir=str(data_dir),
                              model_dir=os.path.join(data_dir, "model"), **{**SMALL, **values})


def _stage_outputs(data_dir):
    """Every file the vocab and data stages wrote (all but model/), with its mtime."""
    paths = [os.path.join(root, name) for root, dirs, files in os.walk(data_dir)
             for name in files if os.path.relpath(root, data_dir).split(os.sep)[0] != "model"]
    return {path: os.stat(path).st_mtime_ns for path in sorted(paths)}


def _contents(data_dir):
    return {path: pathlib.Path(path).read_bytes() for path in _stage_outputs(data_dir)}


def _read_json(*path):
    with open(os.path.join(*path), encoding="utf-8") as f:
        return json.load(f)


def _train_lines(text):
    return [line.split()[1] for line in text.splitlines() if line.startswith("train step=")]


@pytest.fixture(scope="module")
def first_run(corpus, tmp_path_factory):
    """(data_dir, summary, stage outputs) of one whole job from the raw corpus."""
    data_dir = tmp_path_factory.mktemp("job")
    summary = pretrain.run(_cfg(corpus, data_dir))
    return str(data_dir), summary, _stage_outputs(str(data_dir))


def test_whole_job_builds_vocab_and_shards_trains_and_exports(corpus, first_run):
    data_dir, summary, outputs = first_run
    parts = [corpus.replace("*", str(index)) for index in (0, 1)]
    assert _read_json(data_dir, vocab.META_FILE)["inputs"] == parts  # the glob, expanded
    tokenizer = vocab.load_tokenizer(os.path.join(data_dir, "vocab.txt"))
    manifest = _read_json(data_dir, "pretrain_tfrecords", build_data.MANIFEST)
    assert (manifest["complete"], manifest["num_shards"]) == (True, 2)
    assert [entry["path"] for entry in manifest["corpus"]] == parts
    assert (manifest["vocab_sha256"], manifest["max_seq_length"]) == (tokenizer.vocab_sha256, 32)
    assert sum(1 for path in outputs if ".tfrecord-" in path) == 2
    assert manifest["examples"] >= SMALL["num_train_steps"]
    model_dir = os.path.join(data_dir, "model")
    assert summary["step"] == 2
    assert summary["exported"] == [os.path.join(model_dir, "discriminator"),
                                   os.path.join(model_dir, "generator")]
    for tower in ("discriminator", "generator"):
        assert EXPORTED <= set(os.listdir(os.path.join(model_dir, tower)))
    assert os.path.exists(os.path.join(model_dir, "ckpt-2.index"))
    # the corpus yields far fewer than the 32000 tokens asked for: the model takes the real size
    saved = _read_json(model_dir, "config.json")
    assert saved["vocab_size"] == tokenizer.vocab_size < vocab.DEFAULT_VOCAB_SIZE


def test_rerun_skips_finished_stages_and_continues_training(corpus, first_run, capsys):
    data_dir, _, outputs = first_run
    capsys.readouterr()
    # a new training seed is a training choice: the shards stay valid
    summary = pretrain.run(_cfg(corpus, data_dir, num_train_steps=4, seed=7))
    out, err = capsys.readouterr()
    assert _stage_outputs(data_dir) == outputs  # nothing rewritten
    assert f"vocab stage: {os.path.join(data_dir, 'vocab.txt')} exists, skipped" in err
    assert "build_data: all 2 shards" in err and "already complete" in err
    assert _train_lines(out) == ["step=4/4"]  # resumed at step 2: one loop of 2 steps
    assert summary["step"] == 4
    model_dir = os.path.join(data_dir, "model")
    assert {"ckpt-2.index", "ckpt-4.index"} <= set(os.listdir(model_dir))


def _change_vocab_size(data_dir):
    return {"vocab_size": 300}, vocab.VocabError, (
        r"vocab\.txt was built with other vocab settings \(vocab_size=32000 there, 300 wanted\)")


def _change_num_unused(data_dir):
    return {"num_unused": 8}, vocab.VocabError, r"num_unused=4 there, 8 wanted"


def _swap_two_tokens(data_dir):
    """Same size, other ids: only the hash can tell."""
    path = pathlib.Path(data_dir, "vocab.txt")
    tokens = path.read_text(encoding="utf-8").split("\n")
    tokens[-3], tokens[-2] = tokens[-2], tokens[-3]
    path.write_text("\n".join(tokens), encoding="utf-8")
    return {}, vocab.VocabError, r"vocab_sha256 \w+ does not match vocab\.txt .*changed after"


def _replace_vocab_and_metadata(data_dir):
    """A hand-made vocab.txt without metadata: the shards' manifest refuses it."""
    os.remove(os.path.join(data_dir, vocab.META_FILE))
    _swap_two_tokens(data_dir)
    return {}, build_data.BuildError, (r"pretrain_tfrecords holds shards built with different "
                                       r"settings \(vocab_sha256: .*delete them, or pass "
                                       r"--overwrite to python -m electra_ko\.build_data")


@pytest.mark.parametrize("change", [_change_vocab_size, _change_num_unused, _swap_two_tokens,
                                    _replace_vocab_and_metadata])
def test_changed_vocab_is_refused_not_rebuilt(corpus, first_run, tmp_path, change):
    data_dir = str(tmp_path / "job")
    shutil.copytree(first_run[0], data_dir, ignore=shutil.ignore_patterns("model"))
    values, error, message = change(data_dir)
    before = _contents(data_dir)
    with pytest.raises(error, match=message):
        pretrain.run(_cfg(corpus, data_dir, **values))
    assert _contents(data_dir) == before
    assert not os.path.exists(os.path.join(data_dir, "model"))


# ------------------------------------------------------- gs:// for TensorFlow's own client

def _self_signed_cert(directory):
    """(cert, key) PEM files for the two Google API hosts TensorFlow's GCS client calls."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "electra-ko test googleapis")])
    now = datetime.datetime.now(datetime.UTC)
    hosts = [x509.DNSName("www.googleapis.com"), x509.DNSName("storage.googleapis.com")]
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(hosts), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding",
               "content-length"}


def _googleapis_proxy_handler(tls, emulator):
    """An HTTPS proxy that answers for the Google API hosts with the emulator's responses.

    TensorFlow's GCS client has its endpoints built in (no STORAGE_EMULATOR_HOST), but
    honours https_proxy and CURL_CA_BUNDLE: on CONNECT this handler ends TLS itself and
    forwards each request to the plain-HTTP emulator. Bodies are de-chunked on the way:
    TF sends uploads chunked *and* with Content-Length, and the emulator trusts the latter.
    """
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_CONNECT(self):
            self.send_response(200, "Connection established")
            self.end_headers()
            self.connection = tls.wrap_socket(self.connection, server_side=True)
            self.rfile = self.connection.makefile("rb")
            self.wfile = self.connection.makefile("wb", buffering=0)
            self.close_connection = False

        def _body(self):
            if (self.headers.get("Transfer-Encoding") or "").lower() != "chunked":
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0], 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)

        def forward(self):
            body = self._body()
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            upstream = http.client.HTTPConnection(*emulator, timeout=60)
            upstream.request(self.command, self.path, body, headers)
            response = upstream.getresponse()
            payload = response.read()
            upstream.close()
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() == "location":  # resumable upload URL: back through the proxy
                    value = value.replace("http://", "https://", 1)
                if name.lower() not in _HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = forward

    return Handler


@pytest.fixture(scope="module")
def tf_gcs_env(gcs_emulator, tmp_path_factory):
    """(bucket, environment) under which a TensorFlow process reaches the emulator on gs://."""
    from gcp_storage_emulator import server as emulator_server

    read_data = emulator_server._read_data

    def read_empty_upload(handler, query):
        """The emulator reads an empty media upload (TF's `mkdir`) as None and fails on it."""
        data = read_data(handler, query)
        return b"" if data is None and query.get("uploadType") == ["media"] else data

    host, port = os.environ["STORAGE_EMULATOR_HOST"].rsplit("/", 1)[1].split(":")
    cert, key = _self_signed_cert(str(tmp_path_factory.mktemp("tls")))
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    proxy = http.server.ThreadingHTTPServer(
        ("localhost", 0), _googleapis_proxy_handler(tls, (host, int(port))))
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    env = dict(os.environ, https_proxy=f"http://localhost:{proxy.server_address[1]}",
               CURL_CA_BUNDLE=cert, GOOGLE_AUTH_TOKEN_FOR_TESTING="emulator",
               GCS_RETRY_CONFIG_MAX_RETRIES="2")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(emulator_server, "_read_data", read_empty_upload)
        yield gcs_emulator, env
    proxy.shutdown()
    proxy.server_close()


@pytest.mark.slow
def test_cli_whole_job_on_gcs(corpus, tf_gcs_env):
    """The CLI form, once (a subprocess: the in-process emulator must not wait on TF's GIL)."""
    bucket, env = tf_gcs_env
    data_dir = f"gs://{bucket}/{uuid.uuid4().hex}"
    model_dir = data_dir + "/model"
    overrides = [arg for key, value in SMALL.items() for arg in ("--set", f"{key}={value}")]
    result = subprocess.run(
        [sys.executable, "-m", "electra_ko.pretrain", "--config", DEBUG_CONFIG, "--corpus", corpus,
         "--data_dir", data_dir, "--model_dir", model_dir, *overrides],
        check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert _train_lines(result.stdout) == ["step=2/2"]
    found = set(storage.glob(data_dir + "/*"))
    expected = {"vocab.txt", vocab.META_FILE, "pretrain_tfrecords/manifest.json",
                "pretrain_tfrecords/pretrain_data.tfrecord-00000-of-00002",
                "pretrain_tfrecords/pretrain_data.tfrecord-00001-of-00002", "model/config.json",
                "model/checkpoint", "model/ckpt-2.index", "model/ckpt-2.data-00000-of-00001"}
    expected |= {f"model/{tower}/{name}" for tower in ("discriminator", "generator")
                 for name in EXPORTED}
    assert {f"{data_dir}/{name}" for name in expected} <= found
    assert any(path.startswith(f"{model_dir}/train/events.out.tfevents") for path in found)
    tokenizer = vocab.load_tokenizer(data_dir + "/vocab.txt")
    exported = storage.read_text(f"{model_dir}/discriminator/vocab.txt").splitlines()
    assert exported == tokenizer.tokens
