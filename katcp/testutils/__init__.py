"""Helpers for testing KATCP device servers and clients.

Downstream test suites use these to start a device server, talk to it with a blocking client
that makes assertions, record messages, wait for sensor transitions and drive tornado code
with a virtual clock. They work from ``unittest`` and from ``pytest``.

The helpers live in submodules by concern; every name is documented (and reports itself)
as ``katcp.testutils.<name>``.
"""

from katcp._export import forward_patches, publish
from katcp.testutils.clients import BlockingTestClient
from katcp.testutils.logs import TestLogHandler
from katcp.testutils.loops import call_in_ioloop, start_thread_with_cleanup
from katcp.testutils.messages import (MessageRecorder, TestUtilMixin, add_mid_to_msg_str,
                                      list_to_native_strings)
from katcp.testutils.mocks import (AsyncWaitingMock, AtomicIaddCallback, WaitingMock,
                                   counting_callback)
from katcp.testutils.requests import ClientConnectionTest, handle_mock_req, mock_req
from katcp.testutils.sensors import (SensorComparisonMixin, SensorTransitionStatusWaiter,
                                     SensorTransitionWaiter, suppress_queue_repeats,
                                     wait_sensor, wait_sensor_async)
from katcp.testutils.servers import (AsyncDeviceTestServer, DeviceTestSensor,
                                     DeviceTestServer, DeviceTestServerWithTimeoutHints)
from katcp.testutils.timewarp import TimewarpAsyncTestCase, TimewarpAsyncTestCaseTimeAdvancer

__all__ = publish(__name__, globals())

# 0.9.3 code and tests patch names here that its one module looked up at call time.
forward_patches(__name__)
