"""The main job in README.md: a server, a model trained on the spot, an endpoint with two
weighted variants, and invocations through an unmodified boto3 client."""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx


def _tarball(model: object, path: Path) -> Path:
    import joblib

    buf = io.BytesIO()
    joblib.dump(model, buf)
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("model.joblib")
        info.size = len(buf.getvalue())
        tar.addfile(info, io.BytesIO(buf.getvalue()))
    return path


def run_demo(port: int = 8080, data_dir: Path | None = None, invocations: int = 10) -> None:
    import boto3
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    work = Path(tempfile.mkdtemp(prefix="moorage-demo-"))
    data_dir = data_dir or work / "data"
    url = f"http://127.0.0.1:{port}"
    print(f"1. starting moorage server on {url} (data in {data_dir})")
    key, secret = "demo-" + secrets.token_hex(6), secrets.token_urlsafe(30)
    env = {**os.environ, "MOORAGE_ADMIN_ACCESS_KEY_ID": key, "MOORAGE_ADMIN_SECRET_ACCESS_KEY": secret}
    server = subprocess.Popen([sys.executable, "-m", "moorage", "server", "--port", str(port),
                               "--data-dir", str(data_dir), "--log-level", "warning"], env=env)
    try:
        for _ in range(300):
            try:
                if httpx.get(url + "/ping", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        else:
            raise SystemExit("the server did not start")

        print("2. training two scikit-learn models on a synthetic dataset")
        X, y = make_classification(n_samples=1000, n_features=4, n_informative=3, n_redundant=0,
                                   random_state=7)
        lr = _tarball(LogisticRegression().fit(X, y), work / "lr.tar.gz")
        rf = _tarball(RandomForestClassifier(n_estimators=20, random_state=7).fit(X, y),
                      work / "rf.tar.gz")

        sm = boto3.client("sagemaker", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id=key, aws_secret_access_key=secret)
        rt = boto3.client("sagemaker-runtime", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id=key, aws_secret_access_key=secret)
        print("3. deploying endpoint 'demo' with variants lr (weight 0.7) and rf (weight 0.3)")
        for name, path in (("demo-lr", lr), ("demo-rf", rf)):
            sm.create_model(ModelName=name, PrimaryContainer={
                "Image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
                "ModelDataUrl": str(path)})
        sm.create_endpoint_config(EndpointConfigName="demo", ProductionVariants=[
            {"VariantName": "lr", "ModelName": "demo-lr", "InstanceType": "ml.m5.large",
             "InitialInstanceCount": 1, "InitialVariantWeight": 0.7},
            {"VariantName": "rf", "ModelName": "demo-rf", "InstanceType": "ml.m5.large",
             "InitialInstanceCount": 1, "InitialVariantWeight": 0.3}])
        sm.create_endpoint(EndpointName="demo", EndpointConfigName="demo")
        t0 = time.monotonic()
        sm.get_waiter("endpoint_in_service").wait(EndpointName="demo",
                                                  WaiterConfig={"Delay": 1, "MaxAttempts": 120})
        print(f"   InService after {time.monotonic() - t0:.1f} s")

        print(f"4. invoking it {invocations} times (text/csv rows)")
        seen: Counter[str] = Counter()
        for i in range(invocations):
            row = ",".join(f"{v:.4f}" for v in X[i])
            r = rt.invoke_endpoint(EndpointName="demo", ContentType="text/csv", Body=row)
            pred = r["Body"].read().decode().strip()
            seen[r["InvokedProductionVariant"]] += 1
            print(f"   row {i}: prediction {pred} (true {y[i]}) from variant {r['InvokedProductionVariant']}")
        print(f"   variants that answered: {dict(seen)}")
        sm.delete_endpoint(EndpointName="demo")
        print("5. done; endpoint deleted")
    finally:
        server.terminate()
        server.wait(30)
