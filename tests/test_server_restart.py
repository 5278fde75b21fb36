"""A server restarted after stop() answers again, whatever was sent while it was down."""

from katcp import Message

from test_server import ExampleServer, connect, start_server, stop_server


def test_restarted_server_answers_after_an_inform_sent_while_stopped():
    server = ExampleServer("127.0.0.1", 0)
    port = start_server(server)
    with connect(port) as client:
        assert client.request("?watchdog") == ([], "!watchdog ok")
    stop_server(server)
    # Queued for a loop that is gone (nobody can receive it); it must not block
    # what the restarted server sends.
    server.mass_inform(Message.inform("late", "news"))
    port = start_server(server)
    try:
        with connect(port) as client:
            assert client.request("?watchdog") == ([], "!watchdog ok")
            server.mass_inform(Message.inform("fresh", "news"))
            assert client.readline() == b"#fresh news"
    finally:
        stop_server(server)


def test_many_restarts_with_requests_in_between():
    server = ExampleServer("127.0.0.1", 0)
    for _ in range(10):
        port = start_server(server)
        with connect(port) as client:
            assert client.request("?watchdog") == ([], "!watchdog ok")
        stop_server(server)
        assert not server.running()
