from setpay.v1 import authorization_pb2 as _authorization_pb2
from setpay.v1 import capture_pb2 as _capture_pb2
from setpay.v1 import gateway_admin_pb2 as _gateway_admin_pb2
from setpay.v1 import purchase_pb2 as _purchase_pb2
from setpay.v1 import registration_pb2 as _registration_pb2
from google.protobuf import descriptor as _descriptor
from typing import ClassVar as _ClassVar

DESCRIPTOR: _descriptor.FileDescriptor
