"""The ConnectSafely provider (connectsafely.ai): the driver, its webhook parser and its fake API.

`driver.py` (the `Provider`), `api.py` (the wire and budgets), `errors.py` (three error body shapes),
`quota.py` (weekly and daily quotas), `shapes.py` (time and id formats), `webhook.py`
(`message.received`), `fake.py` and `fake_routes.py` (the fake API for `seqrun fake connectsafely`).
"""
