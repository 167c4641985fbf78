"""The ConnectSafely provider (connectsafely.ai): the driver, its webhook parser and its fake API.

`driver.py` (the `Provider`), `api.py` (the wire and budgets), `errors.py` (three error body shapes),
`quota.py` (weekly and daily quotas), `shapes.py` (time and id formats), `webhook.py`
(`message.received`), and the fake API of `seqrun fake connectsafely`: `fake.py` (dispatch, budgets,
quotas, webhook deliveries), `fake_routes.py` (the endpoints), `fake_control.py` (`/_fake/` levers).
"""
