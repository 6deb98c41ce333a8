"""The walking skeleton: the OpenAI SDK through httpd to the fake upstream."""
import openai

from conftest import PROVIDER_KEY, make_token


def test_chat_through_gateway(gateway, up):
    client = openai.OpenAI(base_url=gateway.openai_base, api_key=make_token("s1@example.com"))
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello there world"}])
    reply = raw.parse()
    assert reply.choices[0].message.content == "This is a fake reply."
    # 3 prompt words at $0.15/1M + 5 reply words at $0.60/1M
    assert raw.headers["cost"] == "0.00000345"
    sent = up.requests()[-1]
    assert sent["headers"]["authorization"] == "Bearer " + PROVIDER_KEY
    assert sent["path"] == "/v1/chat/completions"
