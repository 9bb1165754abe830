#!/usr/bin/env python3
"""Tests of scripts/ddb_throttle_proxy.py against dynalite.

    ROOMCAST_TEST_DYNAMODB_ENDPOINT=http://127.0.0.1:4567 python3 scripts/test_ddb_throttle_proxy.py

The end-to-end tests need dynalite (scripts/test starts one and exports
ROOMCAST_TEST_DYNAMODB_ENDPOINT) and are skipped without it; the bucket and
item-size tests need nothing. No assertion depends on timing: the end-to-end
budget is 0.01 write units a second with a 20,000 s burst, so a key holds 200
units and refills one every 100 s: 1,500 writes to one key are throttled past the
first 200 (give or take one), while 150 writes to each of 10 keys fit whatever
the speed. The client has no
retries: every request is sent once and its answer counted.
"""

import http.client
import json
import os
import sys
import subprocess
import time
import unittest
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ddb_throttle_proxy as proxy  # noqa: E402

PROXY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ddb_throttle_proxy.py")

ENDPOINT = os.environ.get("ROOMCAST_TEST_DYNAMODB_ENDPOINT")


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class BucketTests(unittest.TestCase):
    def test_a_key_gets_its_budget_and_no_more(self):
        clock = FakeClock()
        t = proxy.Throttle(1000, 3000, 1.0, clock)
        key = ("T", None, "room#big")
        taken = sum(t.take_write(key, 1) for _ in range(1500))
        self.assertEqual(taken, 1000)
        self.assertEqual(t.keys[key].throttled, 500)
        clock.now = 0.5  # half a second refills half the budget
        self.assertEqual(sum(t.take_write(key, 1) for _ in range(1000)), 500)

    def test_other_keys_have_their_own_budget(self):
        t = proxy.Throttle(1000, 3000, 1.0, FakeClock())
        for i in range(10):
            for _ in range(150):
                self.assertTrue(t.take_write(("T", None, f"room#{i}"), 1))
        self.assertEqual(sum(s.throttled for s in t.keys.values()), 0)

    def test_reads_are_admitted_then_charged(self):
        t = proxy.Throttle(1000, 3000, 1.0, FakeClock())
        key = ("T", None, "room#big")
        self.assertTrue(t.admit_read(key, 0.5))
        t.charge_read(key, 3000)
        self.assertFalse(t.admit_read(key, 0.5))

    def test_item_sizes(self):
        item = {"pk": {"S": "room#a"}, "sk": {"S": "conn#b"}, "ttl": {"N": "1732623303"}}
        # 2+6 + 2+6 + 3+(10 digits -> 6 bytes)
        self.assertEqual(proxy.item_size(item), 25)
        self.assertEqual(proxy.write_units(25), 1)
        self.assertEqual(proxy.write_units(1025), 2)
        big = {"pk": {"S": "k"}, "blob": {"S": "x" * 3000}}
        self.assertEqual(proxy.write_charge("PutItem", {"Item": big})[1], 3)

    def test_query_key_from_the_condition(self):
        doc = {
            "KeyConditionExpression": "#p = :pk AND sk > :s",
            "ExpressionAttributeNames": {"#p": "pk"},
            "ExpressionAttributeValues": {":pk": {"S": "room#a"}, ":s": {"S": "conn#"}},
        }
        self.assertEqual(proxy.query_key(doc, "pk"), "room#a")


class Client:
    """A DynamoDB JSON 1.0 client without retries (dynalite does not check signatures)."""

    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, op, doc):
        self.conn.request("POST", "/", json.dumps(doc), {
            "content-type": "application/x-amz-json-1.0",
            "x-amz-target": f"DynamoDB_20120810.{op}",
            "x-amz-date": "20261206T000000Z",
            "authorization": "AWS4-HMAC-SHA256 Credential=x/20261206/us-east-1/dynamodb/aws4_request, "
            "SignedHeaders=host;x-amz-date;x-amz-target, Signature=0",
        })
        resp = self.conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")

    def stats(self):
        self.conn.request("GET", "/stats")
        return json.loads(self.conn.getresponse().read())


@unittest.skipUnless(ENDPOINT, "needs dynalite: set ROOMCAST_TEST_DYNAMODB_ENDPOINT")
class ThroughProxyTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # The proxy as it is run: its own process, listening on a free port it prints.
        cls.proxy = subprocess.Popen(
            [sys.executable, PROXY, "--upstream", ENDPOINT, "--write-units", "0.01", "--burst-secs", "20000"],
            stdout=subprocess.PIPE, text=True,
        )
        banner = cls.proxy.stdout.readline()
        cls.port = int(banner.split("http://127.0.0.1:")[1].split()[0])
        cls.table = f"throttle-test-{os.getpid()}"
        cls.admin = Client(cls.port)
        status, answer = cls.admin.call("CreateTable", {
            "TableName": cls.table,
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                     {"AttributeName": "sk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            "BillingMode": "PAY_PER_REQUEST",
        })
        assert status == 200, answer
        while answer.get("TableDescription", answer.get("Table", {})).get("TableStatus") != "ACTIVE":
            time.sleep(0.05)
            status, answer = cls.admin.call("DescribeTable", {"TableName": cls.table})
        cls.clients = [cls.admin]

    @classmethod
    def tearDownClass(cls):
        for c in cls.clients:
            c.conn.close()
        cls.proxy.terminate()
        out, _ = cls.proxy.communicate(timeout=30)
        # On exit it prints its totals.
        assert json.loads(out)["throttled"] > 0, out

    def client(self):
        c = Client(self.port)
        self.clients.append(c)
        return c

    def put(self, client, pk, sk):
        return client.call("PutItem", {"TableName": self.table, "Item": {"pk": {"S": pk}, "sk": {"S": sk}}})

    def test_one_key_past_its_budget_is_throttled(self):
        client = self.client()
        answers = [self.put(client, "room#hot", f"conn#{i}") for i in range(1500)]
        throttled = [a for s, a in answers if s == 400]
        ok = sum(1 for s, _ in answers if s == 200)
        self.assertGreaterEqual(len(throttled), 1299)
        self.assertIn(ok, (200, 201))
        self.assertEqual(ok + len(throttled), 1500)
        error = throttled[0]
        self.assertEqual(error["__type"], "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException")
        self.assertEqual(error["ThrottlingReasons"][0]["reason"], "TableWriteKeyRangeThroughputExceeded")
        hot = next(k for k in client.stats()["hottest"] if k["key"] == "room#hot")
        self.assertEqual(hot["throttled"], len(throttled))
        # The writes that were let through reached dynalite, the others did not.
        status, answer = client.call("Query", {
            "TableName": self.table, "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": "room#hot"}}, "Select": "COUNT",
        })
        self.assertEqual((status, answer["Count"]), (200, ok))

    def test_ten_keys_within_their_budget_are_not_throttled(self):
        client = self.client()
        for i in range(150):
            for k in range(10):
                status, answer = self.put(client, f"room#cool{k}", f"conn#{i}")
                self.assertEqual(status, 200, answer)
        for k in client.stats()["hottest"]:
            if k["key"].startswith("room#cool"):
                self.assertEqual(k["throttled"], 0)

    def test_a_batch_returns_what_did_not_fit_as_unprocessed(self):
        client = self.client()
        for i in range(200):
            self.assertEqual(self.put(client, "room#batch", f"conn#{i}")[0], 200)
        requests = [{"PutRequest": {"Item": {"pk": {"S": "room#batch"}, "sk": {"S": f"b#{i}"}}}} for i in range(5)]
        requests.append({"PutRequest": {"Item": {"pk": {"S": "room#other"}, "sk": {"S": "b"}}}})
        status, answer = client.call("BatchWriteItem", {"RequestItems": {self.table: requests}})
        self.assertEqual(status, 200, answer)
        left = answer["UnprocessedItems"][self.table]
        self.assertEqual(len(left), 5)
        self.assertTrue(all(r["PutRequest"]["Item"]["pk"]["S"] == "room#batch" for r in left))


if __name__ == "__main__":
    unittest.main()
