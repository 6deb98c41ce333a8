"""The media endpoints, billed by their own units: images/generations per
image by model, size and quality; audio/speech per input character;
audio/transcriptions per minute of audio, its form read in C within the
body limit. Each is allow-listed per location, reserved before it is
forwarded (the most it can cost) and settled from the answer, through the
real openai SDK. The attacks first: none may cost nothing, cost more than
reserved, or hold the gateway."""
import io
import json
import math
import secrets
import socket
import time
import wave

import httpx
import openai
import pytest

from conftest import PROVIDER_KEY, Gateway, curl, make_token

PICO = 10 ** 12
MEDIA = "/media/v1"
# USD per image / minute / 1M characters, as conf/prices.conf says.
DALLE3 = {("1024x1024", "standard"): 0.04, ("1792x1024", "hd"): 0.12}
DALLE2_512 = 18 * 10 ** 9        # $0.018
DALLE3_STD = 40 * 10 ** 9        # $0.04
WHISPER_PER_SECOND = 10 ** 8     # $0.006 a minute
TTS1_PER_CHAR = 15 * 10 ** 6     # $15 per 1M characters
MAX_BODY = 2 * 1024 * 1024

CONF = """
AIProxyMaxBody %d
<Location %s>
    AIProxyRoute openai
    AIProxyEndpoints images/generations audio/transcriptions audio/speech chat/completions
    AIProxyModels dall-e-3 dall-e-2 whisper-1 tts-1 tts-1-hd gpt-4o-mini
</Location>
""" % (MAX_BODY, MEDIA)


@pytest.fixture(scope="module")
def media(store, upstream):
    with Gateway(store, upstream, extra_conf=CONF) as g:
        yield g


def email(tag):
    return "media-%s-%s@example.com" % (tag, secrets.token_hex(4))


def client(gateway, who, **kw):
    return openai.OpenAI(base_url=gateway.base + MEDIA, api_key=make_token(who),
                         max_retries=0, timeout=20, **kw)


def usd(pico):
    return "%s" % (pico / PICO)


def cost(headers):
    return round(float(headers["cost"]) * PICO)


def month(gateway, who):
    return gateway.db().months.find_one({"email": who}) or {}


def records(gateway, who):
    gateway.wait_records()
    return [(d["endpoint"], d["model"], d["cost"], d["status"])
            for d in gateway.db().requests.find({"email": who})]


def sent(up):
    return [(r["method"], r["path"]) for r in up.requests()]


def err_of(status, body, expected):
    assert status == expected, body
    err = json.loads(body)["error"]
    assert err["message"] and err["type"] and err["code"], err
    return err


def wav(seconds, rate=8000, width=2):
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(b"\0" * width * int(seconds * rate))
    return buf.getvalue()


def bound(nbytes):
    """The reservation of a transcription: the file's bytes at 6 kbit/s."""
    seconds = -(-nbytes // 750)
    return -(-seconds * 6 * 10 ** 9 // 60)


def form(fields, files=(), boundary="b0undary"):
    out = b""
    for k, v in fields:
        out += (b"--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n"
                % (boundary.encode(), k.encode(), v.encode()))
    for k, name, data in files:
        out += (b"--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                b"Content-Type: audio/wav\r\n\r\n%s\r\n"
                % (boundary.encode(), k.encode(), name.encode(), data))
    return out + b"--%s--\r\n" % boundary.encode(), \
        "multipart/form-data; boundary=%s" % boundary


def post_form(gateway, who, body, ctype, path=MEDIA + "/audio/transcriptions"):
    r = httpx.post(gateway.url(path), content=body, timeout=20,
                   headers={"Authorization": "Bearer " + make_token(who),
                            "Content-Type": ctype})
    return r.status_code, r.headers, r.content


# ---------------------------------------------------------------- speech

def test_speech_is_charged_its_characters_and_passes_the_audio(media, up):
    who = email("tts")
    text = "héllo wörld ✓ 🙂"   # 15 code points, 22 bytes
    raw = client(media, who).audio.speech.with_raw_response.create(
        model="tts-1", voice="alloy", input=text)
    audio = raw.content
    assert raw.headers["content-type"] == "audio/mpeg"
    assert len(audio) == 64 * len(text) and audio[:4] == bytes(range(4))
    assert cost(raw.headers) == 15 * TTS1_PER_CHAR
    m = month(media, who)
    assert m["spent"] == 15 * TTS1_PER_CHAR and m["reserved"] == 0 and m["requests"] == 1
    assert records(media, who) == [("audio/speech", "tts-1", 15 * TTS1_PER_CHAR, 200)]
    assert json.loads(up.requests()[-1]["body"])["input"] == text
    assert up.requests()[-1]["headers"]["authorization"] == "Bearer " + PROVIDER_KEY


def test_speech_audio_larger_than_held_answers_passes_whole(media, up):
    """Audio is not held (the held-answer bound would refuse it): 5 MB
    passes as it comes, at the price of its characters."""
    who = email("ttsbig")
    n = 5 * 1024 * 1024
    raw = client(media, who).audio.speech.with_raw_response.create(
        model="tts-1-hd", voice="nova", input="long", response_format="wav",
        extra_headers={"X-Fake-Audio-Bytes": str(n)})
    audio = raw.content
    assert len(audio) == n and raw.headers["content-type"] == "audio/wav"
    assert cost(raw.headers) == 4 * 2 * TTS1_PER_CHAR


@pytest.mark.parametrize("body,code", [
    ({"model": "tts-1", "voice": "alloy"}, "invalid_request"),
    ({"model": "tts-1", "voice": "alloy", "input": ""}, "invalid_request"),
    ({"model": "tts-1", "voice": "alloy", "input": ["a"]}, "invalid_request"),
    ({"model": "tts-1", "voice": "alloy", "input": "hi", "stream_format": "sse"},
     "stream_not_supported"),
    ({"model": "tts-1", "voice": "alloy", "input": "hi", "stream": True},
     "stream_not_supported"),
])
def test_speech_bodies_refused_without_charge(media, up, body, code):
    who = email("ttsbad")
    status, hdrs, raw = curl(media, MEDIA + "/audio/speech", token=make_token(who), body=body)
    assert err_of(status, raw, 400)["code"] == code
    assert sent(up) == [] and month(media, who).get("spent", 0) == 0


def test_speech_upstream_error_is_not_charged(media, up):
    who = email("ttserr")
    with pytest.raises(openai.BadRequestError):
        client(media, who).audio.speech.create(model="tts-1", voice="alloy", input="hi",
                                               extra_headers={"X-Fake-Status": "400"})
    m = month(media, who)
    assert m.get("spent", 0) == 0 and m.get("reserved", 0) == 0
    assert records(media, who) == [("audio/speech", "tts-1", 0, 400)]


def test_a_token_model_is_not_priced_for_speech_nor_a_speech_model_for_chat(media, up):
    who = email("cross")
    status, _, raw = curl(media, MEDIA + "/audio/speech", token=make_token(who),
                          body={"model": "gpt-4o-mini", "voice": "alloy", "input": "hi"})
    assert err_of(status, raw, 403)["code"] == "model_not_priced"
    status, _, raw = curl(media, MEDIA + "/chat/completions", token=make_token(who),
                          body={"model": "tts-1", "messages": [{"role": "user", "content": "x"}]})
    assert err_of(status, raw, 403)["code"] == "model_not_priced"
    status, _, raw = curl(media, MEDIA + "/images/generations", token=make_token(who),
                          body={"model": "whisper-1", "prompt": "x"})
    assert err_of(status, raw, 403)["code"] == "model_not_priced"
    assert sent(up) == []


# ---------------------------------------------------------------- images

@pytest.mark.parametrize("kw,each", [
    ({}, DALLE3_STD),                                         # OpenAI's defaults
    ({"size": "1024x1024", "quality": "standard"}, DALLE3_STD),
    ({"size": "1792x1024", "quality": "hd"}, 120 * 10 ** 9),
])
def test_images_charged_per_image_by_size_and_quality(media, up, kw, each):
    who = email("img")
    raw = client(media, who).images.with_raw_response.generate(
        model="dall-e-3", prompt="a lighthouse", **kw)
    img = raw.parse()
    assert len(img.data) == 1 and img.data[0].url.startswith("https://")
    assert cost(raw.headers) == each
    m = month(media, who)
    assert m["spent"] == each and m["reserved"] == 0
    assert records(media, who) == [("images/generations", "dall-e-3", each, 200)]
    # What was priced is what the provider is asked for: a size or quality
    # left out is named, never left to the provider's own (maybe dearer)
    # default; one given goes as given.
    body = json.loads(up.requests()[-1]["body"])
    assert (body["size"], body["quality"]) == (kw.get("size", "1024x1024"),
                                               kw.get("quality", "standard"))
    assert body["prompt"] == "a lighthouse" and body["model"] == "dall-e-3"


def test_images_n_and_fewer_returned_pay_fewer(media, up):
    who = email("imgn")
    c = client(media, who)
    raw = c.images.with_raw_response.generate(model="dall-e-2", prompt="x", n=3,
                                              size="512x512")
    assert len(raw.parse().data) == 3 and cost(raw.headers) == 3 * DALLE2_512
    raw = c.images.with_raw_response.generate(model="dall-e-2", prompt="x", n=3,
                                              size="512x512",
                                              extra_headers={"X-Fake-Images": "1"})
    assert len(raw.parse().data) == 1 and cost(raw.headers) == DALLE2_512
    raw = c.images.with_raw_response.generate(model="dall-e-2", prompt="x", n=2,
                                              size="512x512",
                                              extra_headers={"X-Fake-Images": "0"})
    assert raw.parse().data == [] and cost(raw.headers) == 0
    assert month(media, who)["spent"] == 4 * DALLE2_512


def test_images_more_than_asked_pay_the_reservation_only(media, up):
    who = email("imgmore")
    media.expect_log(r"more than its reservation")
    raw = client(media, who).images.with_raw_response.generate(
        model="dall-e-2", prompt="x", n=1, size="512x512",
        extra_headers={"X-Fake-Images": "4"})
    assert cost(raw.headers) == DALLE2_512


def test_large_b64_images_pass_within_the_held_bounds(media, up):
    """Two 3 MB b64_json images: held in a file past 1 MiB, counted as they
    pass, charged two."""
    who = email("b64")
    raw = client(media, who).images.with_raw_response.generate(
        model="dall-e-2", prompt="x", n=2, size="512x512", response_format="b64_json",
        extra_headers={"X-Fake-B64-Bytes": str(3 * 1024 * 1024)})
    img = raw.parse()
    assert [len(d.b64_json) for d in img.data] == [3 * 1024 * 1024] * 2
    assert cost(raw.headers) == 2 * DALLE2_512


@pytest.mark.parametrize("body,code", [
    ({"model": "dall-e-3", "prompt": "x", "size": "256x256"}, "image_size_not_priced"),
    ({"model": "dall-e-3", "prompt": "x", "quality": "ultra"}, "image_size_not_priced"),
    ({"model": "dall-e-2", "prompt": "x", "quality": "hd"}, "image_size_not_priced"),
    ({"model": "dall-e-3", "prompt": "x", "size": ""}, "invalid_request"),
    ({"model": "dall-e-3", "prompt": "x", "size": 1024}, "invalid_request"),
    ({"model": "dall-e-3", "prompt": "x", "n": 2}, "invalid_n"),
    ({"model": "dall-e-2", "prompt": "x", "n": 11}, "invalid_n"),
    ({"model": "dall-e-2", "prompt": "x", "n": 0}, "invalid_n"),
    ({"model": "dall-e-2", "prompt": "x", "n": 1.5}, "invalid_n"),
    ({"model": "dall-e-2", "prompt": "x", "n": "2"}, "invalid_n"),
    ({"model": "dall-e-2", "prompt": "x", "stream": True}, "stream_not_supported"),
])
def test_images_refused_never_at_zero(media, up, body, code):
    who = email("imgbad")
    status, hdrs, raw = curl(media, MEDIA + "/images/generations", token=make_token(who),
                             body=body)
    assert err_of(status, raw, 400)["code"] == code
    assert sent(up) == [] and month(media, who).get("spent", 0) == 0


def test_images_reservation_must_fit_the_cap(media, up):
    who = email("imgcap")
    media.set_cap(who, 50 * 10 ** 9)        # $0.05
    c = client(media, who)
    with pytest.raises(openai.RateLimitError) as e:
        c.images.generate(model="dall-e-2", prompt="x", n=3, size="512x512")  # $0.054
    assert e.value.body["code"] == "insufficient_quota"
    assert sent(up) == []
    raw = c.images.with_raw_response.generate(model="dall-e-2", prompt="x", n=2,
                                              size="512x512")
    assert cost(raw.headers) == 2 * DALLE2_512


def test_images_upstream_error_is_not_charged(media, up):
    who = email("imgerr")
    with pytest.raises(openai.BadRequestError):
        client(media, who).images.generate(model="dall-e-3", prompt="x",
                                           extra_headers={"X-Fake-Status": "400"})
    m = month(media, who)
    assert m.get("spent", 0) == 0 and m.get("reserved", 0) == 0


def test_images_garbage_answer_pays_the_reservation_and_the_child_lives(media, up):
    """A 200 whose images cannot be counted may have cost them all."""
    who = email("imggarbage")
    status, hdrs, raw = curl(media, MEDIA + "/images/generations", token=make_token(who),
                             body={"model": "dall-e-2", "prompt": "x", "n": 2,
                                   "size": "512x512"},
                             headers=["X-Fake-Raw: {\"data\": [1, 2"])
    assert status == 200 and raw == b'{"data": [1, 2'
    assert cost(hdrs) == 2 * DALLE2_512
    raw = client(media, who).images.with_raw_response.generate(
        model="dall-e-2", prompt="x", size="512x512")
    assert cost(raw.headers) == DALLE2_512


def test_endpoint_not_allowed_on_a_location_is_404(media, up):
    """/openai/v1 of the test configuration does not list the media
    endpoints."""
    status, _, raw = curl(media, "/openai/v1/images/generations",
                          token=make_token(email("404")),
                          body={"model": "dall-e-3", "prompt": "x"})
    err_of(status, raw, 404)
    assert sent(up) == []


@pytest.mark.parametrize("path", [
    "/v1/images/generations", "/v1/audio/speech", "/proxy/openai/v1/images/generations",
    "/proxy/openai/v1/audio/transcriptions",
])
def test_routes_without_an_endpoint_list_do_not_serve_media(media, up, path):
    """A route's default is every endpoint of its API but images and audio:
    those cost per unit and open only where AIProxyEndpoints lists them."""
    status, _, raw = curl(media, path, token=make_token(email("default")),
                          body={"model": "dall-e-2", "prompt": "x", "input": "hi",
                                "voice": "alloy"})
    err_of(status, raw, 404)
    assert sent(up) == []


# ---------------------------------------------------------- transcriptions

def test_transcription_json_is_charged_its_seconds(media, up):
    who = email("stt")
    audio = wav(3.2)
    raw = client(media, who).audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("hello.wav", audio, "audio/wav"))
    assert raw.parse().text == "A fake transcription."
    assert cost(raw.headers) == 4 * WHISPER_PER_SECOND          # 3.2 s, by the second
    m = month(media, who)
    assert m["spent"] == 4 * WHISPER_PER_SECOND and m["reserved"] == 0
    assert records(media, who) == [("audio/transcriptions", "whisper-1",
                                    4 * WHISPER_PER_SECOND, 200)]
    rec = up.requests()[-1]
    assert rec["path"] == "/v1/audio/transcriptions"
    assert rec["headers"]["content-type"].startswith("multipart/form-data")


def test_transcription_verbose_json_is_charged_its_duration(media, up):
    who = email("sttv")
    raw = client(media, who).audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("a.wav", wav(1.5), "audio/wav"),
        response_format="verbose_json", extra_headers={"X-Fake-No-Usage": "1"})
    assert raw.parse().duration == 1.5
    assert cost(raw.headers) == 2 * WHISPER_PER_SECOND


@pytest.mark.parametrize("fmt", ["text", "srt", "vtt"])
def test_transcription_without_a_duration_pays_its_bound(media, up, fmt):
    """text, srt and vtt tell no duration: the most the file can hold."""
    who = email("stt" + fmt)
    audio = wav(2)
    raw = client(media, who).audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("a.wav", audio, "audio/wav"), response_format=fmt)
    assert "A fake transcription." in raw.text
    # The SDK's form adds some bytes around the file; the bound is the file's.
    assert cost(raw.headers) == bound(len(audio))
    assert month(media, who)["reserved"] == 0


def test_transcription_of_audio_denser_than_the_bound_reserves_what_it_declares(media, up):
    """A WAV at 100 bytes a second holds 20 s in 2 KB, more than 6 kbit/s
    bounds (3 s): its header raises the reservation, so its whole duration
    is charged (and no charge passes what was reserved)."""
    who = email("sttdense")
    audio = wav(20, rate=100, width=1)
    assert bound(len(audio)) == 3 * WHISPER_PER_SECOND
    raw = client(media, who).audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("a.wav", audio, "audio/wav"), response_format="text")
    assert cost(raw.headers) == 20 * WHISPER_PER_SECOND
    raw = client(media, who).audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=("a.wav", audio, "audio/wav"))
    assert cost(raw.headers) == 20 * WHISPER_PER_SECOND


def test_transcription_reservation_must_fit_the_cap(media, up):
    who = email("sttcap")
    audio = wav(4)                           # 64 KB: at most 86 s, $0.0086
    media.set_cap(who, bound(len(audio)) - 1)
    with pytest.raises(openai.RateLimitError):
        client(media, who).audio.transcriptions.create(
            model="whisper-1", file=("a.wav", audio, "audio/wav"))
    assert sent(up) == []


@pytest.mark.parametrize("fields,files,code", [
    ([], [("file", "a.wav", b"RIFF")], 400),                                 # no model
    ([("model", "")], [("file", "a.wav", b"RIFF")], 400),
    ([("model", "whisper-1"), ("model", "whisper-1")], [("file", "a.wav", b"R")], 400),
    ([("model", "gpt-4o")], [("file", "a.wav", b"RIFF")], 403),              # not allowed
    ([("model", "tts-1")], [("file", "a.wav", b"RIFF")], 403),               # not priced
    ([("model", "whisper-1")], [], 400),                                     # no file
    ([("model", "whisper-1")], [("file", "a.wav", b"")], 400),               # empty file
    ([("model", "whisper-1"), ("stream", "true")], [("file", "a.wav", b"R")], 400),
    ([("model", "whisper-1\r\nx")], [("file", "a.wav", b"R")], 400),
])
def test_transcription_forms_refused(media, up, fields, files, code):
    who = email("sttbad")
    body, ctype = form(fields, files)
    status, _, raw = post_form(media, who, body, ctype)
    err_of(status, raw, code)
    assert sent(up) == [] and month(media, who).get("spent", 0) == 0


def test_transcription_model_comes_from_the_form_only(media, up):
    """Not from the query string or a header: without a form model, refused."""
    who = email("sttq")
    body, ctype = form([], [("file", "a.wav", wav(1))])
    r = httpx.post(media.url(MEDIA + "/audio/transcriptions?model=whisper-1"),
                   content=body, timeout=20,
                   headers={"Authorization": "Bearer " + make_token(who),
                            "Content-Type": ctype, "X-Model": "whisper-1",
                            "OpenAI-Model": "whisper-1"})
    err_of(r.status_code, r.content, 400)
    assert sent(up) == []


@pytest.mark.parametrize("body,ctype", [
    (b"not a form", "multipart/form-data; boundary=b0undary"),
    (b"--b0undary\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1",
     "multipart/form-data; boundary=b0undary"),                            # never closed
    (b"--b0undary\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1"
     b"\r\n--b0undary--\r\n", "multipart/form-data"),                      # no boundary
    (b"--b0undary\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1"
     b"\r\n--b0undary--\r\n", "application/json"),
    (b"--b0undary\r\nContent-Disposition: attachment; name=\"model\"\r\n\r\nwhisper-1"
     b"\r\n--b0undary--\r\n", "multipart/form-data; boundary=b0undary"),
    (b"--b0undary\r\nContent-Disposition: form-data\r\n\r\nwhisper-1"
     b"\r\n--b0undary--\r\n", "multipart/form-data; boundary=b0undary"),   # no name
    (b"--b0undary\r\n" + b"X-Long: " + b"a" * 9000 + b"\r\n\r\nx\r\n--b0undary--\r\n",
     "multipart/form-data; boundary=b0undary"),
    (b"--b0undary--\r\n", "multipart/form-data; boundary=b0undary"),       # no parts
    (b"", "multipart/form-data; boundary=" + "b" * 71),
])
def test_malformed_multipart_is_400(media, up, body, ctype):
    who = email("sttmal")
    status, _, raw = post_form(media, who, body, ctype)
    err_of(status, raw, 400)
    assert sent(up) == []


M = b'--b0undary\r\nContent-Disposition: form-data; name="model"\r\n\r\nwhisper-1\r\n'
F = b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'


@pytest.mark.parametrize("body", [
    # A second model behind a bare-LF delimiter, inside the file: a lax
    # parser's part.
    M + F + b"RIFF\n--b0undary\nContent-Disposition: form-data; name=\"model\"\n\n"
    b"gpt-4o-transcribe\n\r\n--b0undary--\r\n",
    # A name given twice, or extended (RFC 2231) beside the plain one.
    b'--b0undary\r\nContent-Disposition: form-data; name="prompt"; name*=UTF-8\'\'model\r\n'
    b'\r\nwhisper-1\r\n' + F + b"RIFF\r\n--b0undary--\r\n",
    b'--b0undary\r\nContent-Disposition: form-data; name="model"; name="prompt"\r\n'
    b'\r\nwhisper-1\r\n' + F + b"RIFF\r\n--b0undary--\r\n",
    # An encoded model reads as another to whoever decodes it.
    b'--b0undary\r\nContent-Disposition: form-data; name="model"\r\n'
    b'Content-Transfer-Encoding: base64\r\n\r\nd2hpc3Blci0x\r\n' + F +
    b"RIFF\r\n--b0undary--\r\n",
])
def test_forms_another_parser_could_read_otherwise_are_400(media, up, body):
    """The provider must read the model the gateway allowed and priced:
    a form whose reading depends on the parser is refused."""
    status, _, raw = post_form(media, email("sttdiff"), body,
                               "multipart/form-data; boundary=b0undary")
    err_of(status, raw, 400)
    assert sent(up) == []


def test_multipart_larger_than_the_body_limit_is_413_unread(media, up):
    """Refused on its Content-Length, before the gateway reads it: the
    answer comes while most of the body was never sent."""
    who = email("stt413")
    total = 20 * MAX_BODY
    head = ("POST %s/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
            "Authorization: Bearer %s\r\n"
            "Content-Type: multipart/form-data; boundary=b0undary\r\n"
            "Content-Length: %d\r\n\r\n" % (MEDIA, make_token(who), total)).encode()
    s = socket.create_connection(("127.0.0.1", media.port), timeout=10)
    try:
        s.sendall(head + b"--b0undary\r\n" + b"x" * 65536)
        data = b""
        deadline = time.time() + 10
        while b"\r\n\r\n" not in data and time.time() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    assert data.startswith(b"HTTP/1.1 413"), data[:200]
    assert sent(up) == []


def test_multipart_within_the_limit_but_growing_past_it_is_413(media, up):
    """Chunked, with no length: read up to the limit, then refused."""
    who = email("stt413c")

    def chunks():
        yield b"--b0undary\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
        for _ in range(3 * MAX_BODY // 65536):
            yield b"x" * 65536

    r = httpx.post(media.url(MEDIA + "/audio/transcriptions"), content=chunks(), timeout=20,
                   headers={"Authorization": "Bearer " + make_token(who),
                            "Content-Type": "multipart/form-data; boundary=b0undary"})
    err_of(r.status_code, r.content, 413)
    assert sent(up) == []


def test_transcription_upstream_error_is_not_charged(media, up):
    who = email("stterr")
    with pytest.raises(openai.BadRequestError):
        client(media, who).audio.transcriptions.create(
            model="whisper-1", file=("a.wav", wav(1), "audio/wav"),
            extra_headers={"X-Fake-Status": "400"})
    m = month(media, who)
    assert m.get("spent", 0) == 0 and m.get("reserved", 0) == 0


# ---------------------------------------------------------------- config

@pytest.mark.parametrize("line,says", [
    ("AIProxyPrice m image_1024_standard=0.04", "image_SIZE_QUALITY"),
    ("AIProxyPrice m image_1024x1024_=0.04", "image_SIZE_QUALITY"),
    ("AIProxyPrice m image_1024x1024_hd=0", "more than 0"),
    ("AIProxyPrice m image_1024x1024_hd=0.04 image_1024x1024_hd=0.05", "given twice"),
    ("AIProxyPrice m per_minute=abc", "per_minute="),
    ("AIProxyPrice m per_million_chars=0", "more than 0"),
    ("AIProxyPrice m per_minute", "needs =VALUE"),
    ("AIProxyPrice m image_1024x1024_hd=0.04 max_images=11", "max_images="),
])
def test_broken_media_prices_stop_httpd(store, upstream, line, says):
    g = Gateway(store, upstream, extra_conf=line + "\n")
    rc, out = g.configtest()
    assert rc != 0 and "AIProxyPrice m" in out and says in out, out
