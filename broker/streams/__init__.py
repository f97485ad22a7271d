"""Northbound streams: what applications get of the devices' data once it is stored.

The write-behind tells the hub (`hub.StreamHub`) of each batch it committed; the hub
turns the rows into application messages and hands them to the data subscriptions
(retained, served to `enos-subscribe` by `subscribe_server`), the webhooks and the
live streams (SSE). Every queue here is bounded and a full one drops its oldest,
counted: a slow application never slows a device.
"""
