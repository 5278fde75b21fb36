"""Concrete high-level KATCP clients: :mod:`katcp.resource` over real connections.

:class:`KATCPClientResource` inspects one device through
:class:`ReplyWrappedInspectingClientAsync` and exposes its requests and sensors as
``resource.req.<name>`` and ``resource.sensor.<name>``.
:class:`KATCPClientResourceContainer` aggregates many of them, and :class:`ClientGroup`
acts on a subset at once.  Everything here runs on one tornado IOLoop; the
``ThreadSafe*Wrapper`` classes make the same objects usable (blocking) from other
threads, e.g. in IPython; :func:`connect_resource` gives one, synced, in one call.

The classes live in submodules by concern; every name is documented (and reports itself)
as ``katcp.resource_client.<name>``.
"""

from katcp._export import forward_patches, publish
from katcp.resource_client.connect import connect_resource
from katcp.resource_client.groups import ClientGroup, GroupRequest, GroupResults
from katcp.resource_client.inspecting import (KATCPClientResourceRequest,
                                              KATCPClientResourceSensorsManager,
                                              ReplyWrappedInspectingClientAsync,
                                              transform_future)
from katcp.resource_client.namespaces import AttrMappingProxy, MappingProxy
from katcp.resource_client.resources import (KATCPClientResource,
                                             KATCPClientResourceContainer, list_sensors,
                                             monitor_resource_sync_state)
from katcp.resource_client.threadsafe import (ThreadSafeKATCPClientGroupWrapper,
                                              ThreadSafeKATCPClientResourceRequestWrapper,
                                              ThreadSafeKATCPClientResourceWrapper,
                                              ThreadSafeKATCPSensorWrapper)

__all__ = publish(__name__, globals())

# 0.9.3 code and tests patch names here that its one module looked up at call time.
forward_patches(__name__)
