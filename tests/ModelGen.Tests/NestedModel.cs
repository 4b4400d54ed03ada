namespace ModelGen.Tests.Nested
{
    public partial class Outer
    {
        /// <summary>Models may be nested in partial types.</summary>
        [Sequential(Loss = Loss.BinaryCrossentropy)]
        public partial class Inner
        {
            [Input(2)] public Input point;
            [Dense(8, Activation.Tanh)] public Dense hidden;
            [Dropout(0.1)] public Dropout dropout;
            [Dense(1, Activation.Sigmoid)] public Dense positive;
        }
    }
}
